"""Pause and resume: the cgroup freezer stops every process (no output, no CPU),
memory and files stay, resume continues where it stopped; exec on a paused
sandbox is a 409; delete, expiry and an agent restart work on paused sandboxes."""

import json
import threading
import time
from datetime import datetime

from conftest import assert_error, read_int, wait_for

COUNTER = "i=0; while :; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.05; done"


def pause(client, sid, body=None):
    return client.post(f"/v1/sandboxes/{sid}/pause", body if body is not None else {})


def resume(client, sid, body=None):
    return client.post(f"/v1/sandboxes/{sid}/resume", body if body is not None else {})


def host_count(agent, sid):
    """The counter file, read on the host through the sandbox's rootfs."""
    p = agent.state_dir / "sandboxes" / sid / "rootfs" / "tmp" / "count"
    for _ in range(50):
        try:
            return int(p.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.05)  # between the shell's truncate and its write
    raise AssertionError(f"cannot read {p}")


def cgroup_freezer_state(agent, sid):
    p = agent.cgroup_dir("freezer", sid) / "freezer.state"
    if p.exists():
        return p.read_text().strip()
    p2 = agent.cgroup_dir("", sid) / "cgroup.freeze"  # v2
    return "FROZEN" if p2.read_text().strip() == "1" else "THAWED"


def cpu_ns(client, sid):
    r = client.get(f"/v1/sandboxes/{sid}/metrics")
    assert r.status == 200, r
    return r.json()["cpu_usage_ns"]


def cgroup_cpu_ns(agent, sid):
    """The kernel's CPU usage counter of the sandbox's cgroup (v1 cpuacct, v2 cpu.stat)."""
    p = agent.cgroup_dir("cpuacct", sid) / "cpuacct.usage"
    if p.exists():
        return read_int(p)
    stat = dict(line.split() for line in (agent.cgroup_dir("", sid) / "cpu.stat").read_text().splitlines())
    return int(stat["usage_usec"]) * 1000


def ms(iso):
    """An API timestamp (millisecond resolution) as integer milliseconds."""
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def host_ms():
    return int(time.time() * 1000)


def frozen_interval(agent, sid, seconds):
    """Let SECONDS pass while the sandbox is frozen: the interval over which
    a test then checks that nothing ran. The wait is the thing tested (a
    counter ticking every 50 ms would move ~20 times a second if it ran); the
    freezer must say FROZEN throughout."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert cgroup_freezer_state(agent, sid) == "FROZEN"
        time.sleep(0.1)


def test_pause_freezes_and_resume_continues(client, agent, sandbox):
    sid = sandbox["id"]
    bg = client.post(f"/v1/sandboxes/{sid}/exec", {"shell": COUNTER, "background": True})
    assert bg.status == 201, bg
    pid = bg.json()["pid"]
    spin = client.post(f"/v1/sandboxes/{sid}/exec", {"shell": "while :; do :; done", "background": True})
    assert spin.status == 201, spin
    wait_for(lambda: host_count(agent, sid) >= 5, timeout=20, what="the counter to run")

    r = pause(client, sid)
    assert r.status == 200, r
    obj = r.json()
    assert obj["state"] == "paused" and obj["deadline_paused"] is True and "paused_at" in obj
    assert client.sandbox(sid).json()["state"] == "paused"
    assert cgroup_freezer_state(agent, sid) == "FROZEN"

    frozen_at = host_count(agent, sid)
    cpu_before, cg_before = cpu_ns(client, sid), cgroup_cpu_ns(agent, sid)
    frozen_interval(agent, sid, 1.5)
    # nothing ran while frozen: the counter did not move, the cgroup used no CPU
    assert host_count(agent, sid) == frozen_at
    assert cgroup_cpu_ns(agent, sid) == cg_before
    assert cpu_ns(client, sid) == cpu_before
    # memory and files stayed: the tmpfs still holds the file, the cgroup its memory
    m = client.get(f"/v1/sandboxes/{sid}/metrics").json()
    assert m["state"] == "paused" and m["memory_used"] > 0 and m["pids"] >= 3

    r = resume(client, sid)
    assert r.status == 200, r
    assert r.json()["state"] == "running" and "paused_at" not in r.json()
    assert cgroup_freezer_state(agent, sid) == "THAWED"
    wait_for(lambda: host_count(agent, sid) > frozen_at + 5, timeout=20, what="the counter to go on")
    assert cgroup_cpu_ns(agent, sid) > cg_before and cpu_ns(client, sid) > cpu_before

    # the same process kept counting: its output is one unbroken sequence from 1
    client.post(f"/v1/sandboxes/{sid}/processes/{pid}/signal", {"signal": "KILL"})
    out = client.reconnect(sid, pid).stdout.split()
    nums = [int(x) for x in out]
    assert nums[0] == 1 and nums == list(range(1, len(nums) + 1)), nums[:20]
    assert len(nums) > frozen_at
    assert [p["pid"] for p in client.processes(sid) if p["pid"] == pid] == [pid]


def test_calls_on_paused_sandbox_get_409(client, sandbox):
    sid = sandbox["id"]
    bg = client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sleep", "600"], "background": True})
    assert bg.status == 201
    pid = bg.json()["pid"]
    assert pause(client, sid).status == 200
    body = assert_error(client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}), 409)
    assert "paused" in body["message"]
    assert_error(client.get(f"/v1/sandboxes/{sid}/processes"), 409)
    assert_error(client.get(f"/v1/sandboxes/{sid}/processes/{pid}/stream"), 409)
    assert_error(client.post(f"/v1/sandboxes/{sid}/processes/{pid}/signal", {"signal": "TERM"}), 409)
    assert_error(client.post(f"/v1/sandboxes/{sid}/processes/{pid}/stdin", {"eof": True}), 409)
    # file, archive, watch and code calls too
    assert_error(client.get(f"/v1/sandboxes/{sid}/files?path=/etc/hostname"), 409)
    assert_error(client.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/x", raw=b"x"), 409)
    assert_error(client.get(f"/v1/sandboxes/{sid}/fs/ls?path=/tmp"), 409)
    assert_error(client.get(f"/v1/sandboxes/{sid}/archive?path=/tmp&format=tar.gz"), 409)
    assert_error(client.get(f"/v1/sandboxes/{sid}/watch?path=/tmp"), 409)
    assert_error(client.post(f"/v1/sandboxes/{sid}/code", {"code": "1", "language": "bash"}), 409)
    # already paused
    body = assert_error(pause(client, sid), 409)
    assert "paused" in body["message"]
    # get, list, metrics and timeout still answer
    assert client.sandbox(sid).status == 200
    assert sid in client.list_ids()
    assert client.get(f"/v1/sandboxes/{sid}/metrics").status == 200
    assert client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": 100}).status == 200
    assert resume(client, sid).status == 200
    # not paused any more
    body = assert_error(resume(client, sid), 409)
    assert "not paused" in body["message"]
    assert client.exec(sid, cmd=["true"]).exit_code == 0
    assert client.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/x", raw=b"x").status in (200, 201, 204)


def test_pause_resume_errors(client, sandbox, unique):
    sid = sandbox["id"]
    for verb in ("pause", "resume"):
        assert_error(client.post(f"/v1/sandboxes/nope-{unique}/{verb}", {}), 404)
        assert_error(client.post(f"/v1/sandboxes/NOT_VALID/{verb}", {}), 404)
        assert_error(client.get(f"/v1/sandboxes/{sid}/{verb}"), 405)
        assert_error(client.post(f"/v1/sandboxes/{sid}/{verb}/x", {}), 404)
        assert_error(client.post(f"/v1/sandboxes/{sid}/{verb}", raw=b"{nope"), 400)
        assert_error(client.post(f"/v1/sandboxes/{sid}/{verb}", {"bogus": 1}), 400)
    assert_error(pause(client, sid, {"stop_deadline": "yes"}), 400)
    assert_error(resume(client, sid, {"timeout": 0}), 400)
    assert_error(resume(client, sid, {"timeout": "10"}), 400)
    # an empty body is {}
    r = client.post(f"/v1/sandboxes/{sid}/pause", raw=b"")
    assert r.status == 200, r
    assert resume(client, sid).status == 200


def test_deadline_stops_by_default_and_moves_on_resume(client, make_sandbox):
    sid = make_sandbox(timeout=3)["id"]
    before = client.sandbox(sid).json()["expires_at"]
    r = pause(client, sid)
    assert r.status == 200
    paused_at = ms(r.json()["paused_at"])
    # Let the deadline pass (the wait is the thing tested): a stopped clock keeps the sandbox.
    wait_for(lambda: host_ms() > ms(before) + 1000, timeout=30, interval=0.2, what="the deadline to pass")
    g = client.sandbox(sid)
    assert g.status == 200 and g.json()["state"] == "paused" and g.json()["expires_at"] == before, g
    t0 = host_ms()
    r = resume(client, sid)
    t1 = host_ms() + 1
    assert r.status == 200
    # moved forward by exactly the paused time: expires_at - before = resume time - paused_at
    moved = ms(r.json()["expires_at"]) - ms(before)
    assert t0 - paused_at - 2 <= moved <= t1 - paused_at + 1, (before, r.json(), paused_at, t0, t1)
    # and the sandbox still expires on its own afterwards
    wait_for(lambda: client.sandbox(sid).status == 404, timeout=30, what="expiry after resume")


def test_deadline_running_expires_paused_sandbox(client, agent, make_sandbox):
    sid = make_sandbox(timeout=2)["id"]
    client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sleep", "600"], "background": True})
    r = pause(client, sid, {"stop_deadline": False})
    assert r.status == 200 and r.json()["deadline_paused"] is False
    wait_for(lambda: client.sandbox(sid).status == 404, timeout=30, what="expiry while paused")
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=10, what="cleanup of the expired sandbox")


def test_resume_with_new_timeout(client, sandbox):
    sid = sandbox["id"]
    assert pause(client, sid).status == 200
    r = resume(client, sid, {"timeout": 1234})
    assert r.status == 200 and r.json()["timeout"] == 1234


def test_delete_paused_sandbox(client, agent, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "sleep 600 >/dev/null 2>&1 & sleep 600 >/dev/null 2>&1 &")
    assert pause(client, sid).status == 200
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert agent.leftovers([sid], zombies=False) == []


def test_paused_sandbox_survives_agent_sigkill(client, agent, sandbox):
    sid = sandbox["id"]
    bg = client.post(f"/v1/sandboxes/{sid}/exec", {"shell": COUNTER, "background": True})
    assert bg.status == 201
    wait_for(lambda: host_count(agent, sid) >= 3, timeout=20, what="the counter to run")
    assert pause(client, sid).status == 200
    frozen_at = host_count(agent, sid)
    agent.kill9()
    agent.start()
    g = client.sandbox(sid)
    assert g.status == 200 and g.json()["state"] == "paused", g
    state = json.loads((agent.state_dir / "sandboxes" / sid / "state.json").read_text())
    assert state["paused_us"] > 0
    assert host_count(agent, sid) == frozen_at
    assert_error(client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}), 409)
    assert resume(client, sid).status == 200
    wait_for(lambda: host_count(agent, sid) > frozen_at, timeout=20, what="the counter after restart")
    assert client.exec(sid, cmd=["true"]).exit_code == 0


def test_cli_pause_resume(client, agent, sandbox):
    import subprocess
    from conftest import REPO

    def cli(*args):
        return subprocess.run([str(REPO / "build" / "bin" / "sandpit"), "--server", f"unix://{agent.socket}", *args],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    sid = sandbox["id"]
    r = cli("pause", "--deadline-runs", sid)
    assert r.returncode == 0 and r.stdout.strip() == "paused", r
    assert client.sandbox(sid).json()["deadline_paused"] is False
    r = cli("pause", sid)
    assert r.returncode == 1 and "paused" in r.stderr, r
    r = cli("exec", sid, "true")
    assert r.returncode == 1 and "is paused" in r.stderr, r
    r = cli("resume", "--timeout", "777", "--json", sid)
    assert r.returncode == 0 and json.loads(r.stdout)["timeout"] == 777, r
    r = cli("resume", sid)
    assert r.returncode == 1 and "not paused" in r.stderr, r


def test_timeout_set_while_paused_counts_from_resume(client, agent, sandbox):
    sid = sandbox["id"]
    assert pause(client, sid).status == 200
    assert client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": 1000}).status == 200
    set_at = host_ms()
    # Paused time must not eat into the new timeout: let some pass (the wait is the thing tested).
    frozen_interval(agent, sid, 1)
    t0 = host_ms()
    r = resume(client, sid)
    t1 = host_ms() + 1
    assert r.status == 200
    # the 1000 s count from the resume, not from the timeout call
    start = ms(r.json()["expires_at"]) - 1000 * 1000
    assert t0 - 1 <= start <= t1, (r.json()["expires_at"], set_at, t0, t1)
    assert start > set_at


def test_foreground_stream_survives_pause(client, agent, sandbox):
    sid = sandbox["id"]
    result = {}

    def run():
        result["r"] = client.exec(sid, shell="for i in $(seq 1 80); do echo $i; echo $i > /tmp/count; sleep 0.05; done")

    t = threading.Thread(target=run)
    t.start()
    wait_for(lambda: host_count(agent, sid) >= 3, timeout=20, what="the streamed loop to run")
    assert pause(client, sid).status == 200
    assert cgroup_freezer_state(agent, sid) == "FROZEN"
    frozen_at = host_count(agent, sid)
    frozen_interval(agent, sid, 1)
    # frozen mid-stream: the loop did not go on, and its exec has not answered
    assert host_count(agent, sid) == frozen_at and frozen_at < 80
    assert "r" not in result
    assert resume(client, sid).status == 200
    t.join(30)
    r = result["r"]
    # the same stream carried on: every line once, in order, and the exit
    assert r.exit_code == 0 and r.stdout.split() == [str(i) for i in range(1, 81)], r


def test_on_timeout_pause(client, agent, make_sandbox):
    """on_timeout "pause": at the deadline the sandbox is paused (its deadline
    stopped, its processes kept), not deleted; a resume without a timeout gives
    it a new term of its timeout."""
    sb = make_sandbox(timeout=2, on_timeout="pause")
    sid = sb["id"]
    assert sb["on_timeout"] == "pause"
    r = client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sleep", "600"], "background": True})
    assert r.status == 201, r
    wait_for(lambda: client.sandbox(sid).json().get("state") == "paused", timeout=30, interval=0.2,
             what="the pause at the deadline")
    g = client.sandbox(sid).json()
    assert g["deadline_paused"] is True
    assert cgroup_freezer_state(agent, sid).upper() == "FROZEN"
    r = resume(client, sid)
    assert r.status == 200 and r.json()["state"] == "running"
    assert ms(r.json()["expires_at"]) > host_ms()  # a new term, not paused again at once
    # its processes survived the pause: the sleep is still there
    r = client.exec(sid, shell="cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert r.exit_code == 0 and "sleep 600" in r.stdout, r
    # and the next deadline pauses it again
    wait_for(lambda: client.sandbox(sid).json().get("state") == "paused", timeout=30, interval=0.2,
             what="the second pause")
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=10, what="cleanup")


def test_on_timeout_pause_keeps_a_paused_sandbox(client, make_sandbox):
    """Paused with its deadline running and on_timeout "pause": at the deadline
    it stays paused and its deadline stops."""
    sid = make_sandbox(timeout=2, on_timeout="pause")["id"]
    r = pause(client, sid, {"stop_deadline": False})
    assert r.status == 200 and r.json()["deadline_paused"] is False
    wait_for(lambda: client.sandbox(sid).json().get("deadline_paused") is True, timeout=30, interval=0.2,
             what="the deadline to stop")
    assert client.sandbox(sid).json()["state"] == "paused"


def test_on_timeout_bad_value(client):
    for v in ("kill", 1, None):
        r = client.post("/v1/sandboxes", {"template": "host", "on_timeout": v})
        assert_error(r, 400)
        assert "on_timeout" in r.json()["message"]
