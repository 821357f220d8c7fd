"""Warm pools (docs/performance.md#warm-pools, docs/agent-api.md#warm-pools).

Each test runs its own agent with pools (the shared agent has none), so the
pooled sandboxes that wait between tests never look like leaks; at the end the
pools are removed and the agent must leave nothing behind.

A claim is told from a cold create by what cannot be faked from outside:
the sandbox's init (PID 1) started before the create request was sent, and
the pool's claim counter in /metrics moved. No timing is asserted."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import AGENT_BIN, assert_error, rand_suffix, start_agent, stop_agent, wait_for
from test_code import ok, run_code

CLK_TCK = os.sysconf("SC_CLK_TCK")
SHAPE = {"template": "host", "cpu": 0.25, "memory": 128 << 20}
FLAG = "host:cpu=250m,memory=128Mi,name=warm=2"


def boottime():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class PoolAgent:
    def __init__(self, agent):
        self.a = agent
        self.c = agent.client

    def pools(self):
        r = self.c.get("/v1/pools")
        assert r.status == 200, r
        return r.json()

    def pool(self, name="warm"):
        r = self.c.get(f"/v1/pools/{name}")
        assert r.status == 200, r
        return r.json()

    def wait_ready(self, n, name="warm", timeout=60):
        return wait_for(lambda: (p := self.pool(name))["ready"] == n and p["creating"] == 0 and p,
                        timeout, what=f"pool {name} ready == {n}")

    def metric(self, series, pool="warm"):
        text = self.c.get("/metrics").body.decode()
        key = f'{series}{{pool="{pool}"}} ' if pool else f"{series} "
        for line in text.splitlines():
            if line.startswith(key):
                return int(float(line.split()[-1]))
        raise AssertionError(f"{key!r} not in /metrics")

    def init_start(self, sid):
        """When the sandbox's PID 1 started, in seconds of CLOCK_BOOTTIME (tick precision)."""
        stat = self.c.sh(sid, "cat /proc/1/stat")
        return int(stat.rsplit(")", 1)[1].split()[19]) / CLK_TCK

    def name_leftovers(self, name):
        """What the node still holds under a sandbox name (dir, cgroup, runc, mounts)."""
        self.a.settle()
        left = [f"dir {name}" for d in self.a.sandbox_dirs() if d == name]
        left += [f"cgroup {c}" for c in self.a.cgroup_children() if c.endswith("/" + name)]
        left += [f"runc {i}" for i in self.a.runc_ids() if i == name]
        left += [f"mount {m}" for m in self.a.mounts_under_state() if f"/{name}/" in m + "/"]
        return left


@pytest.fixture
def pool_agent(templates_dir):
    started = []

    def start(*pools, extra=("--capacity-cpu", "16")):
        args = list(extra)
        for p in pools:
            args += ["--pool", p]
        a = start_agent(f"pool-{rand_suffix(4)}", templates_dir, extra_args=args)
        started.append(a)
        return PoolAgent(a)

    yield start
    for a in started:
        try:
            if a.alive():
                for p in a.client.get("/v1/pools").json()["pools"]:
                    a.client.delete(f"/v1/pools/{p['name']}")
                for sid in a.client.created:
                    a.client.delete(f"/v1/sandboxes/{sid}")
                # Removed pools' sandboxes go in the background; then nothing is left.
                wait_for(lambda: not a.leftovers(zombies=False), 60, what="no leftovers after removing the pools")
        finally:
            stop_agent(a)


def test_claim_takes_a_pooled_sandbox_and_the_pool_refills(pool_agent):
    pa = pool_agent(FLAG)
    before = pa.wait_ready(2)["sandboxes"]
    claims = pa.metric("sandpit_pool_claims_total")
    t_request = boottime()
    sbx = pa.c.create(**SHAPE)
    assert pa.metric("sandpit_pool_claims_total") == claims + 1
    # Its init was already running when the request was sent: no runc run.
    assert pa.init_start(sbx["id"]) < t_request
    assert sbx["id"] not in before and sbx["state"] == "running"
    after = pa.pool()["sandboxes"]
    claimed = set(before) - set(after)
    assert len(claimed) == 1, (before, after)
    name = claimed.pop()
    # The caller sees its own id everywhere, the pooled name nowhere.
    assert pa.c.sh(sbx["id"], "hostname").strip() == sbx["id"]
    assert pa.c.list_ids() == [sbx["id"]]
    assert pa.c.get(f"/v1/sandboxes/{name}").status == 404
    for what in ("/proc/self/mountinfo", "/proc/1/environ", "/proc/1/cmdline", "/proc/self/cgroup",
                 "/etc/hosts", "/etc/hostname"):
        seen = pa.c.sh(sbx["id"], f"cat {what} 2>/dev/null; true")
        assert name not in seen, f"{what} names the pooled sandbox {name}: {seen!r}"
    # The pool makes a new one in the background.
    refilled = pa.wait_ready(2)["sandboxes"]
    assert name not in refilled and pa.metric("sandpit_pool_made_total") >= 3
    assert pa.c.delete(f"/v1/sandboxes/{sbx['id']}").status == 204
    assert pa.name_leftovers(name) == []
    assert name not in pa.pool()["sandboxes"]


def test_pooled_sandboxes_are_never_reused(pool_agent):
    pa = pool_agent("host:cpu=250m,memory=128Mi,name=warm=1")
    seen = set(pa.wait_ready(1)["sandboxes"])
    first = pa.c.create(**SHAPE)
    pa.c.sh(first["id"], "echo user-one > /tmp/mark && echo hi > $HOME/left-behind")
    pa.c.sh(first["id"], "sleep 1000 >/dev/null 2>&1 &")
    assert pa.c.delete(f"/v1/sandboxes/{first['id']}").status == 204
    second_pool = pa.wait_ready(1)["sandboxes"]
    assert not seen & set(second_pool), "a pooled sandbox came back to the pool after use"
    for n in seen:
        assert pa.name_leftovers(n) == []
    second = pa.c.create(**SHAPE)
    assert pa.metric("sandpit_pool_claims_total") == 2
    out = pa.c.sh(second["id"], "ls /tmp/mark $HOME/left-behind 2>&1; pgrep -c sleep || true")
    assert "No such file" in out and "user-one" not in out
    assert out.strip().splitlines()[-1] == "0", out


def test_claim_applies_the_callers_settings(pool_agent):
    pa = pool_agent(FLAG)
    pa.wait_ready(2)
    sid = f"mine-{rand_suffix()}"
    t_request = boottime()
    sbx = pa.c.create(**SHAPE, id=sid, env={"GREETING": "hello"}, secret_env={"TOKEN": "s3cr3t-value"},
                      timeout=77, labels={"team": "blue"}, user="root")
    assert sbx["id"] == sid and pa.metric("sandpit_pool_claims_total") == 1
    assert pa.init_start(sid) < t_request
    assert sbx["timeout"] == 77 and sbx["labels"] == {"team": "blue"} and sbx["user"] == "root"
    assert sbx["env"] == {"GREETING": "hello"} and sbx["secret_env"] == ["TOKEN"]
    assert pa.c.list_ids("team=blue") == [sid]
    r = pa.c.exec(sid, shell='id -un; echo "$GREETING"; test "$TOKEN" = s3cr3t-value && echo secret-ok; echo $TOKEN')
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[:3] == ["root", "hello", "secret-ok"], r.stdout
    assert "s3cr3t-value" not in r.stdout  # masked as for a cold sandbox
    # The deadline counts from the claim.
    got = pa.c.sandbox(sid).json()
    created = time.mktime(time.strptime(got["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    expires = time.mktime(time.strptime(got["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert 76 <= expires - created <= 78, got
    # Its cgroup is read under the pooled name: the caller's limits and usage.
    m = pa.c.get(f"/v1/sandboxes/{sid}/metrics")
    assert m.status == 200 and m.json()["memory_limit"] == 128 << 20, m
    # Paused and resumed like any sandbox.
    assert pa.c.post(f"/v1/sandboxes/{sid}/pause").status == 200
    assert pa.c.exec(sid, shell="true").status == 409
    assert pa.c.post(f"/v1/sandboxes/{sid}/resume").status == 200
    assert pa.c.sh(sid, "echo back").strip() == "back"
    # An id already taken is refused as for a cold create, and the pool keeps its sandbox.
    ready = pa.wait_ready(2)["sandboxes"]
    assert_error(pa.c.post("/v1/sandboxes", dict(SHAPE, id=sid)), 409)
    assert_error(pa.c.post("/v1/sandboxes", dict(SHAPE, id=ready[0])), 409)
    assert pa.pool()["sandboxes"] == ready


def test_other_shapes_and_an_empty_pool_go_cold(pool_agent):
    # "big" never fills: its shape does not fit the node's capacity (1 CPU).
    pa = pool_agent(FLAG, "host:cpu=2,name=big=1", extra=("--capacity-cpu", "1"))
    pa.wait_ready(2)
    assert pa.pool("big")["ready"] == 0
    t_request = boottime()
    cold = pa.c.create(template="host", cpu=0.25, memory=64 << 20)
    assert pa.init_start(cold["id"]) >= t_request - 1.0 / CLK_TCK  # a new container
    assert pa.metric("sandpit_pool_claims_total") == 0
    t_request = boottime()
    empty = pa.c.create(template="host", cpu=2)
    assert pa.init_start(empty["id"]) >= t_request - 1.0 / CLK_TCK
    assert pa.metric("sandpit_pool_misses_total", "big") == 1
    assert pa.metric("sandpit_pool_claims_total", "big") == 0


def test_pools_give_capacity_back_to_cold_creates(pool_agent):
    pa = pool_agent("host:cpu=250m,memory=128Mi,name=warm=3", extra=("--capacity-cpu", "1"))
    pa.wait_ready(3)
    # 3 x 0.25 pooled + 0.5 cold > 1 CPU: one pooled sandbox makes room.
    cold = pa.c.create(template="host", cpu=0.5, memory=64 << 20)
    wait_for(lambda: pa.metric("sandpit_pool_shrinks_total", None) == 1, 60, what="a pooled sandbox removed")
    assert pa.pool()["ready"] == 2
    used = pa.pools()["used"]
    assert used["cpu"] <= 1.0 + 1e-9, used
    assert pa.c.delete(f"/v1/sandboxes/{cold['id']}").status == 204
    pa.wait_ready(3)


def test_restart_removes_pooled_and_readopts_claimed(pool_agent):
    pa = pool_agent(FLAG)
    pooled = pa.wait_ready(2)["sandboxes"]
    sbx = pa.c.create(**SHAPE)
    pa.c.sh(sbx["id"], "echo kept > /tmp/kept")
    claimed = (set(pooled) - set(pa.pool()["sandboxes"])).pop()
    pa.wait_ready(2)
    # A crash, and a start without pools: what waited is removed, the claimed one adopted.
    pa.a.kill9()
    pa.a.extra_args = ["--capacity-cpu", "16"]
    pa.a.start()
    assert pa.pools()["pools"] == []
    assert pa.a.sandbox_dirs() == [claimed]
    assert pa.a.runc_ids() == [claimed]
    assert pa.c.list_ids() == [sbx["id"]]
    assert pa.c.sh(sbx["id"], "cat /tmp/kept").strip() == "kept"
    assert pa.c.sandbox(sbx["id"]).json()["oom_kills"] == 0
    assert pa.c.delete(f"/v1/sandboxes/{sbx['id']}").status == 204
    assert pa.a.leftovers(zombies=False) == []
    # A clean stop removes the pooled sandboxes itself.
    pa.a.signal_and_wait(signal.SIGTERM)
    pa.a.extra_args = ["--capacity-cpu", "16", "--pool", FLAG]
    pa.a.start()
    pa.wait_ready(2)
    assert pa.a.signal_and_wait(signal.SIGTERM) == 0
    assert pa.a.leftovers(zombies=False) == []
    wait_for(lambda: pa.a.leftovers() == [], 10, what="the killed processes reaped")
    pa.a.start()


def test_stop_during_a_refill_leaves_nothing(pool_agent):
    """SIGTERM while the refill thread is making a pooled sandbox: shutdown
    waits for that create, then sweeps it with the rest. A pool larger than
    will ever fill in the test keeps a create in flight at every moment."""
    pa = pool_agent("host:cpu=250m,memory=128Mi,name=warm=40")
    wait_for(lambda: (p := pa.pool())["ready"] >= 2 and p["creating"] >= 1 and p, 60,
             what="two ready and a refill in flight")
    assert pa.a.signal_and_wait(signal.SIGTERM) == 0
    assert pa.a.leftovers(zombies=False) == []
    assert pa.a.sandbox_dirs() == [] and pa.a.runc_ids() == []
    wait_for(lambda: pa.a.leftovers() == [], 10, what="the killed processes reaped")
    pa.a.start()


def test_pool_api(pool_agent):
    pa = pool_agent()
    assert pa.pools()["pools"] == []
    r = pa.c.request("PUT", "/v1/pools/small", {"template": "host", "cpu": "250m", "memory": "64Mi", "size": 1})
    assert r.status == 200, r
    assert r.json()["size"] == 1 and r.json()["memory"] == 64 << 20
    pa.wait_ready(1, "small")
    assert_error(pa.c.request("PUT", "/v1/pools/other", {"template": "host", "cpu": 0.25, "memory": 64 << 20,
                                                          "size": 1}), 409)
    assert_error(pa.c.request("PUT", "/v1/pools/x", {"template": "host", "size": 1, "env": {}}), 400)
    assert_error(pa.c.request("PUT", "/v1/pools/x", {"template": "host", "size": -1}), 400)
    assert_error(pa.c.request("PUT", "/v1/pools/x", {"template": "nope", "size": 1}), 404)
    assert_error(pa.c.request("PUT", "/v1/pools/Bad_Name", {"template": "host", "size": 1}), 400)
    assert_error(pa.c.get("/v1/pools/nope"), 404)
    assert_error(pa.c.delete("/v1/pools/nope"), 404)
    # A new shape: the old one's sandbox goes, one of the new shape comes.
    old = pa.pool("small")["sandboxes"]
    r = pa.c.request("PUT", "/v1/pools/small", {"template": "host", "cpu": "250m", "memory": "96Mi", "size": 1})
    assert r.status == 200, r
    new = pa.wait_ready(1, "small")["sandboxes"]
    assert not set(old) & set(new)
    wait_for(lambda: pa.name_leftovers(old[0]) == [], 30, what="the old shape's sandbox removed")
    assert pa.c.delete("/v1/pools/small").status == 204
    wait_for(lambda: not pa.a.leftovers(zombies=False), 30, what="the removed pool's sandbox gone")
    assert pa.c.list_ids() == []


def test_bad_pool_flag_is_refused():
    for bad in ("host", "host=x", "host:gpu=1=2", "host=1001", "host:name=Bad=1", "host:kernel=maybe=1"):
        r = subprocess.run([str(AGENT_BIN), "--standalone", "--socket", "/nonexistent/sock", "--pool", bad],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (bad, r)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "--pool" in lines[0], (bad, r.stderr)


# --------------------------------------------------------------------------- pre-started kernels
# A pool pre-starts the default python context's kernel in each of its
# sandboxes (docs/code-interpreter.md, "Warm pools"); the host template
# borrows the host's python3.

KSHAPE = {"template": "host", "cpu": 0.25, "memory": 256 << 20}
KFLAG = "host:cpu=250m,memory=256Mi,name=warm=1"
VIEW = """import json, os, socket, sys
st = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
print(json.dumps({'start': int(st[19]), 'env': dict(os.environ), 'cwd': os.getcwd(),
                  'uid': os.getuid(), 'gid': os.getgid(), 'path': sys.path,
                  'host': socket.gethostname(), 'names': sorted(k for k in globals() if k[0] != '_')}))
"""


def kernel_view(pa, sid):
    """What the default python context's kernel is, from inside, on the
    sandbox's first run: its start (CLOCK_BOOTTIME s), environment, cwd, ids,
    sys.path and hostname."""
    r = ok(run_code(pa.c, sid, VIEW))
    assert r.count == 1, r
    v = json.loads(r.stdout)
    v["start"] /= CLK_TCK
    return v


def wait_kernels(pa, n, name="warm"):
    return wait_for(lambda: (p := pa.pool(name))["kernels_ready"] == n and p["ready"] == n and
                    p["creating"] == 0 and p, 60, what=f"pool {name}: {n} kernels pre-started")


def test_claim_hands_over_the_prestarted_kernel(pool_agent):
    pa = pool_agent(KFLAG)
    pooled = wait_kernels(pa, 1)["sandboxes"]
    env, secret = {"GREETING": "hello"}, {"TOKEN": "s3cr3t-value", "QUOTED": 'q"uo\\te\nd-\u00e9'}
    t_request = boottime()
    sbx = pa.c.create(**KSHAPE, env=env, secret_env=secret)
    sid = sbx["id"]
    p = pa.pool()
    assert p["claims"] == 1 and p["kernel_claims"] == 1 and p["kernel_drops"] == 0, p
    # As in a cold sandbox, no context is there before the first run.
    r = pa.c.get(f"/v1/sandboxes/{sid}/contexts")
    assert r.status == 200 and r.json()["contexts"] == [], r
    assert_error(pa.c.post(f"/v1/sandboxes/{sid}/contexts/python/restart"), 404)
    v = kernel_view(pa, sid)
    # The kernel that answers was running before the create was sent.
    assert v["start"] < t_request, (v["start"], t_request)
    # The caller's env and secret env are its environment; the secret is masked.
    assert v["env"]["GREETING"] == "hello" and v["env"]["TOKEN"] == "***", v["env"]
    r = ok(run_code(pa.c, sid, "import os\nprint(os.environ['TOKEN'])\nos.environ['TOKEN'] == 's3cr3t-value'"))
    assert r.text == "True" and r.stdout == "***\n", r
    r = ok(run_code(pa.c, sid, "os.environ['TOKEN']"))
    assert r.text == "'***'", r
    r = ok(run_code(pa.c, sid, "os.environ['QUOTED'] == " + repr(secret["QUOTED"])))
    assert r.text == "True", r
    r = ok(run_code(pa.c, sid, "import subprocess\n"
                    "subprocess.run(['sh', '-c', 'test \"$TOKEN\" = s3cr3t-value && echo $GREETING-ok; echo $TOKEN'])"))
    assert r.stdout == "hello-ok\n***\n", r
    # Nothing of the pooled sandbox: its name nowhere, the caller's id as hostname.
    assert v["host"] == sid
    assert not any(n in json.dumps(v) for n in pooled), (pooled, v)
    # And what a cold sandbox with the same settings gives its kernel.
    t_cold = boottime()
    cold = pa.c.create(template="host", cpu=0.5, memory=256 << 20, env=env, secret_env=secret)
    assert pa.pool()["claims"] == 1
    cv = kernel_view(pa, cold["id"])
    assert cv["start"] >= t_cold - 1.0 / CLK_TCK
    for k in ("env", "cwd", "uid", "gid", "path", "names"):
        assert v[k] == cv[k], (k, v[k], cv[k])
    assert pa.c.delete(f"/v1/sandboxes/{cold['id']}").status == 204
    assert pa.c.delete(f"/v1/sandboxes/{sid}").status == 204
    assert pa.name_leftovers(pooled[0]) == []


def test_a_claim_the_kernel_cannot_take_gets_a_fresh_one(pool_agent):
    pa = pool_agent(KFLAG)
    for i, (kw, check) in enumerate([
            ({"user": "root"}, lambda v: v["uid"] == 0 and v["env"]["HOME"] == "/root"),
            ({"env": {"PYTHONPATH": "/opt/sandpit-test"}}, lambda v: "/opt/sandpit-test" in v["path"]),
            ({"env": {"HOME": "/tmp"}}, lambda v: v["env"]["HOME"] == "/tmp"),
    ]):
        wait_kernels(pa, 1)
        t_request = boottime()
        sbx = pa.c.create(**KSHAPE, **kw)
        p = pa.pool()
        assert p["claims"] == i + 1 and p["kernel_drops"] == i + 1 and p["kernel_claims"] == 0, p
        v = kernel_view(pa, sbx["id"])
        # A kernel started at the first run, as for a cold sandbox.
        assert v["start"] >= t_request - 1.0 / CLK_TCK, (kw, v["start"], t_request)
        assert check(v), (kw, v)
        assert pa.c.delete(f"/v1/sandboxes/{sbx['id']}").status == 204


def test_prestarted_kernels_are_never_reused(pool_agent):
    pa = pool_agent(KFLAG)
    wait_kernels(pa, 1)
    first = pa.c.create(**KSHAPE)
    a = kernel_view(pa, first["id"])
    ok(run_code(pa.c, first["id"], "left = 'by-first'\nimport os\nos.environ['LEFT'] = 'first'\nos.chdir('/tmp')"))
    assert pa.c.delete(f"/v1/sandboxes/{first['id']}").status == 204
    wait_kernels(pa, 1)
    second = pa.c.create(**KSHAPE)
    assert pa.pool()["kernel_claims"] == 2
    b = kernel_view(pa, second["id"])
    assert b["start"] > a["start"] and "left" not in b["names"] and "LEFT" not in b["env"], b
    assert b["cwd"] == a["cwd"] != "/tmp"
    assert pa.c.delete(f"/v1/sandboxes/{second['id']}").status == 204


def test_pool_without_kernels(pool_agent):
    pa = pool_agent("host:cpu=250m,memory=256Mi,kernel=false,name=warm=1")
    p = pa.wait_ready(1)
    assert p["kernel"] is False and p["kernels_ready"] == 0, p
    t_request = boottime()
    sbx = pa.c.create(**KSHAPE)
    v = kernel_view(pa, sbx["id"])
    assert v["start"] >= t_request - 1.0 / CLK_TCK
    p = pa.pool()
    assert p["claims"] == 1 and p["kernel_claims"] == 0 and p["kernel_drops"] == 0, p
    # Turned on: the sandboxes made from then on have one (a new shape, so none made before waits).
    r = pa.c.request("PUT", "/v1/pools/warm", {"template": "host", "cpu": "250m", "memory": "192Mi", "size": 1,
                                               "kernel": True})
    assert r.status == 200 and r.json()["kernel"] is True, r
    wait_kernels(pa, 1)
    assert_error(pa.c.request("PUT", "/v1/pools/x", {"template": "host", "size": 0, "kernel": "yes"}), 400)
    assert pa.c.delete(f"/v1/sandboxes/{sbx['id']}").status == 204
