"""sandpit-operator end to end with a REAL cluster-mode agent (docs/cluster.md):
the fixture API server with crds/ applied, `sandpit-agent --kubeconfig ...
--node-name N` registering and renewing its own Lease, and the operator.

- examples/sandbox.yaml applied with kubectl → Ready → a command through the
  `sandpit` CLI over TCP with the token → kubectl delete → the object is gone
  (finalizer removed) and the node holds nothing;
- the agent restarted (SIGTERM deletes its Lease, as a DaemonSet rolling update
  does): its sandboxes stay Running through the gap and work after it; an agent
  that deregistered and does not come back → NodeLost after --node-lost-grace;
- the agent SIGKILLed (its Lease stays and goes stale) → NodeLost; restarted →
  its recovered sandbox is removed by the orphan resync (the object is Failed,
  final), the object stays Failed and is deletable;
- watch reconnect and 410 relist through the operator, with changes made while
  its watches are down;
- the orphan resync removes only sandboxes with the operator's marks and no
  object;
- Sandboxes deleted right after they were applied leave nothing on the node;
- spec.timeout changes move status.expiresAt and the agent's expires_at.

conftest's leak check covers the agent after every test."""

import datetime
import json
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml

from conftest import REPO, Client, find_free_port, rand_suffix, start_agent, stop_agent, wait_for, write_token_file
from test_agent_cluster import ClusterAgent
from test_operator import (EVENTS, OP_NS, SBX, condition, get_sbx, kube, manifest,  # noqa: F401
                           operator_alive, running_operator, wait_ready)

CLI = REPO / "build" / "bin" / "sandpit"
NODE = "node-e2e"
LEASE_DURATION = 10  # s: the operator's watches go down for a few seconds in the relist test
ORPHAN_GRACE = 2
NODE_LOST_GRACE = 15  # s: an agent that deregistered (SIGTERM) and does not come back
# (long enough for the restart test's three reconciles without an agent on a loaded machine)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return write_token_file(tmp_path_factory.mktemp("e2e-token"))


@pytest.fixture(scope="module")
def node(templates_dir, kube, token_file):
    port = find_free_port()
    a = start_agent("e2e", templates_dir, cls=ClusterAgent, listen=f"127.0.0.1:{port}", token_file=token_file[0],
                    extra_args=["--kubeconfig", kube.kubeconfig, "--node-name", NODE,
                                "--lease-duration", str(LEASE_DURATION),
                                "--capacity-cpu", "4", "--capacity-memory", str(4 << 30)])
    a.port, a.token, a.node = port, token_file[1], NODE
    a.api = Client(tcp=("127.0.0.1", port), token=token_file[1])
    yield a
    stop_agent(a)


@pytest.fixture(scope="module")
def operator(kube, node, tmp_path_factory):
    wait_for(lambda: lease_of(kube), 20, what="the agent's Lease")
    yield from running_operator(kube, node, tmp_path_factory.mktemp("operator-e2e"),
                                extra=["--orphan-resync-seconds", "2", "--orphan-grace-seconds", str(ORPHAN_GRACE),
                                       "--node-lost-grace", f"{NODE_LOST_GRACE}s"])


def lease_of(kube):
    st, _, obj = kube.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{OP_NS}/leases/sandpit-agent-{NODE}")
    return obj if st == 200 else None


def node_ids(node):
    return node.client.list_ids()


def wait_node_empty(node, what="the node to hold no sandbox"):
    wait_for(lambda: node_ids(node) == [], 60, interval=0.3, what=what)


def wait_gone(kube, name):
    wait_for(lambda: get_sbx(kube, name) is None, 60, interval=0.3, what=f"Sandbox {name} to be gone")


def phase(kube, name):
    return ((get_sbx(kube, name) or {}).get("status") or {}).get("phase")


def admin(kube, what, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    st, _, obj = kube.request("POST" if what != "stats" else "GET", f"/_admin/{what}" + (f"?{qs}" if qs else ""))
    assert st == 200, (what, st, obj)
    return obj


def cli(node, *args):
    return subprocess.run([str(CLI), "--server", f"http://127.0.0.1:{node.port}", "--token-file", str(node.token_file),
                           *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def example_docs(templates_dir):
    """examples/sandbox.yaml, made to fit this machine: the template it names
    must exist in the agent's templates dir (else `host`), and its AllowList
    egress needs sandbox networking (--sandbox-cidr, test_network.py), which
    this agent, on the host's network, does not set up: the policy is dropped."""
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / "sandbox.yaml").read_text()) if d]
    for d in docs:
        if d["kind"] == "Sandbox":
            if not (templates_dir / d["spec"]["template"]).is_dir():
                d["spec"]["template"] = "host"
            d["spec"].pop("network", None)
    return docs


# --------------------------------------------------------------------------- tests


def test_example_apply_ready_exec_delete(kube, node, operator, templates_dir):
    docs = example_docs(templates_dir)
    sbx = next(d for d in docs if d["kind"] == "Sandbox")
    name = sbx["metadata"]["name"]
    text = yaml.safe_dump_all(docs)
    kube.kubectl("apply", "-f", "-", input=text)
    obj = wait_ready(kube, name)
    st = obj["status"]
    assert st["phase"] == "Running" and st["nodeName"] == NODE
    assert "sandpit.dev/cleanup" in obj["metadata"]["finalizers"]
    sid = st["sandboxID"]
    assert sid == "sbx-" + obj["metadata"]["uid"]
    sb = node.api.sandbox(sid).json()
    assert sb["template"] == sbx["spec"]["template"] and sb["labels"]["team"] == "ml"
    assert sb["labels"]["sandpit.dev/managed-by"] == "sandpit-operator"

    # a command through the CLI, over TCP with the token
    r = cli(node, "exec", sid, "--", "sh", "-c", 'echo "$GREETING from $(id -un)"; echo "$API_TOKEN"')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hello from user", r.stdout
    assert "not-a-real-token" not in r.stdout  # a secret env value is masked in output
    # the CLI without the token is refused
    r = subprocess.run([str(CLI), "--server", f"http://127.0.0.1:{node.port}", "exec", sid, "--", "true"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0

    kube.kubectl("delete", "sandbox", name, "--timeout=60s")
    assert get_sbx(kube, name) is None, "the object is still there after kubectl delete (finalizer not removed)"
    assert node.api.get(f"/v1/sandboxes/{sid}").status == 404
    assert node_ids(node) == []
    kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=text)


def op_metric(op, name):
    """The sum of the samples of metric NAME on the operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split(" ", 1)[0].split("{", 1)[0] == name)


def orphan_passes(op):
    return op_metric(op, "sandpit_operator_orphan_resync_passes_total")


def test_delete_right_after_apply_leaves_nothing(kube, node, operator):
    # each object is deleted at another step of its first reconciles
    steps = [lambda o: True,  # before the operator saw it
             lambda o: "sandpit.dev/cleanup" in o["metadata"].get("finalizers", []),  # before placing
             lambda o: "nodeName" in (o.get("status") or {}),  # placed: creating on the agent
             lambda o: (o.get("status") or {}).get("phase") == "Running",  # created
             lambda o: True]
    names = [f"quick-{rand_suffix(5)}-{i}" for i in range(len(steps))]
    for name, step in zip(names, steps):
        kube.kubectl("apply", "-f", "-", input=manifest(name, timeout="10m"))
        wait_for(lambda: step(get_sbx(kube, name)), 60, interval=0.05, what=f"{name} at its step")
        kube.kubectl("delete", "sandbox", name, "--wait=false")
    for name in names:
        wait_gone(kube, name)
    # Whatever the agent was doing (creating, or not yet asked), nothing stays.
    wait_node_empty(node)
    # A late create (a reconcile still running for a deleted object) would show
    # on the node for at least the orphan grace before the orphan resync removed
    # it: watch the node past that grace and two more resync passes.
    removed, passes = op_metric(operator, "sandpit_operator_orphans_removed_total"), orphan_passes(operator)
    until = time.monotonic() + ORPHAN_GRACE + 3

    def watched():
        assert node_ids(node) == [], "a sandbox appeared after its object was deleted"
        return time.monotonic() > until and orphan_passes(operator) >= passes + 2
    wait_for(watched, 60, interval=0.2, what="the orphan grace and two resync passes")
    assert op_metric(operator, "sandpit_operator_orphans_removed_total") == removed


def test_timeout_change_moves_the_deadline(kube, node, operator):
    name = "tmo-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name, timeout="10m"))
    obj = wait_ready(kube, name)
    sid = obj["status"]["sandboxID"]

    def deadline_is(minutes):
        """status.expiresAt is the agent's expires_at, and that is the
        sandbox's creation on the node (a moment before startedAt) + timeout."""
        st = get_sbx(kube, name)["status"]
        sb = node.api.sandbox(sid).json()
        want = parse_ts(sb["created_at"]) + minutes * 60
        if abs(parse_ts(st["expiresAt"]) - want) <= 1.5 and sb["expires_at"] == st["expiresAt"]:
            assert parse_ts(sb["created_at"]) <= parse_ts(st["startedAt"])
            return st
        return None

    first = deadline_is(10)
    assert first, get_sbx(kube, name)["status"]
    for minutes in (20, 5):
        kube.kubectl("patch", "sandbox", name, "--type", "merge", "-p", json.dumps({"spec": {"timeout": f"{minutes}m"}}))
        wait_for(lambda: deadline_is(minutes), 30, interval=0.3, what=f"expiresAt at startedAt + {minutes}m")
    # still Ready, same sandbox
    obj = get_sbx(kube, name)
    assert condition(obj, "Ready")["status"] == "True" and obj["status"]["sandboxID"] == sid
    # a timeout already past: the sandbox is stopped now (expiryPolicy Retain → Expired)
    kube.kubectl("patch", "sandbox", name, "--type", "merge", "-p", json.dumps({"spec": {"timeout": "1s"}}))
    wait_for(lambda: phase(kube, name) == "Expired", 30, interval=0.3, what="Expired after timeout 1s")
    assert node.api.get(f"/v1/sandboxes/{sid}").status == 404
    kube.kubectl("delete", "sandbox", name, "--timeout=60s")


def parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def test_orphan_resync_removes_only_the_operators_orphans(kube, node, operator):
    kept = "kept-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(kept))
    kept_sid = wait_ready(kube, kept)["status"]["sandboxID"]
    marks = {"sandpit.dev/managed-by": "sandpit-operator", "sandpit.dev/namespace": "default",
             "sandpit.dev/name": "ghost"}
    orphan = node.client.create(id=f"sbx-{uuid.uuid4()}", labels=marks, timeout=600)["id"]
    # not the operator's: no label, or the label without the id shape
    unmarked = node.client.create(id=f"sbx-{uuid.uuid4()}", labels={"team": "x"}, timeout=600)["id"]
    wrong_id = node.client.create(id=f"mine-{rand_suffix(6)}", labels=marks, timeout=600)["id"]
    # an object of that name with another uid does not claim it either
    kube.kubectl("apply", "-f", "-", input=manifest("ghost"))
    wait_ready(kube, "ghost")

    wait_for(lambda: node.api.get(f"/v1/sandboxes/{orphan}").status == 404, ORPHAN_GRACE + 30, interval=0.3,
             what="the orphan to be removed")
    # two more whole passes (the orphan was old enough for each): the others must still be there
    passes = orphan_passes(operator)
    wait_for(lambda: orphan_passes(operator) >= passes + 2, 60, interval=0.3, what="two more orphan resync passes")
    ids = node_ids(node)
    assert unmarked in ids and wrong_id in ids and kept_sid in ids, ids
    # the removed sandbox's name pointed at an object with another uid: no Event on it
    assert not [e for e in kube.ok("GET", EVENTS)["items"]
                if e["reason"] == "OrphanRemoved" and e["regarding"]["name"] == "ghost"]
    assert condition(get_sbx(kube, kept), "Ready")["status"] == "True"
    assert condition(get_sbx(kube, "ghost"), "Ready")["status"] == "True"
    assert "Orphan resync: removed sandbox " + orphan in operator.log.read_text()
    for sid in (unmarked, wrong_id):
        assert node.client.delete(f"/v1/sandboxes/{sid}").status == 204
    for n in (kept, "ghost"):
        kube.kubectl("delete", "sandbox", n, "--timeout=60s")
    wait_node_empty(node)


@pytest.mark.fixture_only  # the fixture's /_admin fault switches; on the real server: test_k8s_real.py restarts it
def test_watch_reconnect_and_relist_lose_no_event(kube, node, operator):
    s = rand_suffix(4)
    a, b, c, d = (f"w{x}-{s}" for x in "abcd")
    for n in (a, b):
        kube.kubectl("apply", "-f", "-", input=manifest(n))
    for n in (a, b):
        wait_ready(kube, n)
    lists_before = admin(kube, "stats")["requests"]["list"]

    # 1. The watches go down and stay down for a while: every open watch is cut,
    # the next watches get 410 (relist), and the next lists fail with 429
    # (Retry-After: 1). Changes made now reach the operator only by its relist.
    admin(kube, "fail-next", verb="list", code="429", count="6")
    admin(kube, "fail-next", verb="watch", code="410", count="2")
    admin(kube, "drop-watches", mode="reset")
    wait_for(lambda: admin(kube, "stats")["watches"] == 0, 10, interval=0.05, what="the watches to be down")
    kube.ok("POST", SBX, json.loads(manifest(c)))
    kube.ok("PATCH", f"{SBX}/{a}", {"spec": {"paused": True}}, ctype="application/merge-patch+json")
    kube.ok("DELETE", f"{SBX}/{b}", want=(200, 202))
    assert admin(kube, "stats")["watches"] == 0, "the change was not made while the watches were down"

    wait_ready(kube, c)
    wait_for(lambda: phase(kube, a) == "Paused", 60, interval=0.3, what=f"{a} Paused")
    wait_gone(kube, b)
    assert admin(kube, "stats")["requests"]["list"] > lists_before, "the operator never relisted"

    # 2. History compacted, then the watches end: the reconnect from an old
    # resourceVersion gets 410 and the operator relists.
    lists_before = admin(kube, "stats")["requests"]["list"]
    kube.ok("PATCH", f"{SBX}/{a}", {"spec": {"paused": False}}, ctype="application/merge-patch+json")
    admin(kube, "compact")
    admin(kube, "drop-watches", mode="close")
    kube.ok("POST", SBX, json.loads(manifest(d)))
    kube.ok("DELETE", f"{SBX}/{c}", want=(200, 202))
    wait_ready(kube, d)
    wait_for(lambda: phase(kube, a) == "Running", 60, interval=0.3, what=f"{a} resumed")
    wait_gone(kube, c)
    wait_for(lambda: admin(kube, "stats")["requests"]["list"] > lists_before, 30, what="a relist after 410")

    # 3. A plain reconnect (stream cut, history kept): a change right after it.
    admin(kube, "drop-watches", mode="reset")
    kube.ok("DELETE", f"{SBX}/{d}", want=(200, 202))
    wait_gone(kube, d)
    kube.ok("DELETE", f"{SBX}/{a}", want=(200, 202))
    wait_gone(kube, a)
    wait_node_empty(node)


def is_node_lost(kube, name):
    """The Sandbox is Failed with Ready=False reason NodeLost."""
    o = get_sbx(kube, name)
    ready = condition(o, "Ready")
    return o["status"].get("phase") == "Failed" and bool(ready) and ready["reason"] == "NodeLost"


def test_agent_killed_node_lost_then_back(kube, node, operator):
    name = "lost-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    sid = wait_ready(kube, name)["status"]["sandboxID"]
    node.kill9()  # its Lease stays, and is no longer renewed
    assert lease_of(kube) is not None

    wait_for(lambda: is_node_lost(kube, name), LEASE_DURATION + 30, interval=0.5, what="NodeLost")
    assert "stopped renewing its lease" in condition(get_sbx(kube, name), "Ready")["message"]

    # Back: the agent re-adopts the sandbox and renews its Lease. The object
    # is Failed (final): the orphan resync removes the sandbox from the node.
    node.start()
    wait_for(lambda: node.api.get(f"/v1/sandboxes/{sid}").status == 404, LEASE_DURATION + ORPHAN_GRACE + 30,
             interval=0.5, what="the recovered sandbox of the Failed object to be removed")
    o = get_sbx(kube, name)
    assert o["status"]["phase"] == "Failed" and condition(o, "Ready")["reason"] == "NodeLost"
    wait_for(lambda: [e for e in kube.ok("GET", EVENTS)["items"]
                      if e["reason"] == "OrphanRemoved" and e["regarding"]["name"] == name], 10,
             what="an OrphanRemoved Event on the object")
    # deletable
    kube.kubectl("delete", "sandbox", name, "--timeout=60s")
    assert get_sbx(kube, name) is None
    wait_node_empty(node)
    # and the node takes new work again
    again = "again-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(again))
    wait_ready(kube, again)
    kube.kubectl("delete", "sandbox", again, "--timeout=60s")
    wait_node_empty(node)


def reconciles(op):
    return op_metric(op, "sandpit_operator_reconciles_total")


def test_agent_restart_keeps_its_sandboxes_running(kube, node, operator):
    """A rolling update of the agent DaemonSet: SIGTERM deletes the Lease, the
    new agent registers again a few seconds later and re-adopts the sandboxes.
    Objects reconciled in between must not be failed as NodeLost."""
    name = "restart-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    sid = wait_ready(kube, name)["status"]["sandboxID"]
    assert node.signal_and_wait(signal.SIGTERM) == 0
    assert lease_of(kube) is None, "SIGTERM should have deleted the agent's Lease"
    # The object is reconciled (resyncs every 2 s, and a change of its own)
    # while the node has no agent: it stays Running.
    before = reconciles(operator)
    kube.ok("PATCH", f"{SBX}/{name}", {"metadata": {"annotations": {"test/poke": "1"}}},
            ctype="application/merge-patch+json")
    wait_for(lambda: reconciles(operator) >= before + 3, 30, interval=0.2, what="three reconciles without an agent")
    o = get_sbx(kube, name)
    assert o["status"]["phase"] == "Running", json.dumps(o["status"], indent=1)
    assert condition(o, "Ready")["status"] == "True"
    # The agent is back: the sandbox was re-adopted, runs commands, and the
    # object is still Running with the same id.
    node.start()
    wait_for(lambda: lease_of(kube), 20, what="the agent's Lease again")
    p = cli(node, "exec", sid, "--", "echo", "still-here")
    assert p.returncode == 0 and p.stdout.strip() == "still-here", p.stderr
    before = reconciles(operator)
    wait_for(lambda: reconciles(operator) >= before + 2, 30, interval=0.2, what="two reconciles with the agent back")
    o = get_sbx(kube, name)
    assert o["status"]["phase"] == "Running" and o["status"]["sandboxID"] == sid
    kube.kubectl("delete", "sandbox", name, "--timeout=60s")
    wait_node_empty(node)


def test_agent_gone_for_good_is_node_lost_after_the_grace(kube, node, operator):
    name = "gone-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    sid = wait_ready(kube, name)["status"]["sandboxID"]
    assert node.signal_and_wait(signal.SIGTERM) == 0
    assert lease_of(kube) is None
    try:
        wait_for(lambda: is_node_lost(kube, name), NODE_LOST_GRACE + 30, interval=0.5,
                 what="NodeLost after the grace")
        assert "has no agent registered" in condition(get_sbx(kube, name), "Ready")["message"]
    finally:
        node.start()
    # The object is Failed (final): the orphan resync removes the re-adopted sandbox.
    wait_for(lambda: node.api.get(f"/v1/sandboxes/{sid}").status == 404, ORPHAN_GRACE + 30,
             interval=0.5, what="the recovered sandbox of the Failed object to be removed")
    kube.kubectl("delete", "sandbox", name, "--timeout=60s")
    wait_node_empty(node)
