"""Delete answers once the sandbox is dead (docs/agent-api.md#delete): its
init, PID 1 of its pid namespace, is SIGKILLed, so every process in it dies,
and it leaves the API's view; runc delete, the cgroup, the mounts, the network
and the state dir go in the background (teardown_pending in /v1/info). The
leak check counts that background work (Agent.settle()). No timing is
asserted here: bench/ measures how fast the answer comes."""

import signal
import threading

from conftest import (assert_error, pids_in_cgroup_prefix, proc_state, rand_suffix, start_agent, stop_agent,
                      wait_for)
from test_pool import FLAG, SHAPE, pool_agent  # noqa: F401 (pool_agent is a fixture)


def running(pid):
    """The host process is there and not a zombie."""
    return proc_state(pid) not in (None, "Z")


def sandbox_pids(agent, sid):
    """Host pids of the sandbox's processes (its cgroup), zombies left out."""
    return set(pids_in_cgroup_prefix(f"/{agent.cgroup_parent}/{sid}", zombies=False))


def test_delete_kills_everything_and_hides_the_sandbox_at_once(agent, client):
    sid = client.create()["id"]
    init = agent.runc_init_pid(sid)
    client.sh(sid, "setsid sleep 1000 </dev/null >/dev/null 2>&1 & sleep 1000 </dev/null >/dev/null 2>&1 &")
    pids = sandbox_pids(agent, sid)
    assert init in pids and len(pids) >= 3, pids
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    # Dead when the answer came, not some time later.
    still = [p for p in pids if running(p)]
    assert still == [], f"still running after DELETE answered: {still}"
    assert_error(client.sandbox(sid), 404)
    assert sid not in client.list_ids()
    assert_error(client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}), 404)
    # Answered: a second delete finds nothing, though the teardown may still run.
    assert_error(client.delete(f"/v1/sandboxes/{sid}"), 404)
    agent.settle()
    assert agent.teardown_pending() == 0
    assert agent.leftovers([sid], zombies=False) == []


def test_teardown_pending_is_reported(agent, client):
    info = client.get("/v1/info").json()
    assert isinstance(info["teardown_pending"], int) and info["teardown_pending"] >= 0
    text = client.get("/metrics").body.decode()
    assert "# TYPE sandpit_teardown_pending gauge" in text
    sid = client.create()["id"]
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    agent.settle()
    gauge = [ln for ln in client.get("/metrics").body.decode().splitlines()
             if ln.startswith("sandpit_teardown_pending ")]
    assert gauge == ["sandpit_teardown_pending 0"], gauge


def test_deleting_many_at_once_leaks_nothing(agent, client):
    ids = [client.create()["id"] for _ in range(20)]
    inits = {sid: agent.runc_init_pid(sid) for sid in ids}
    answers = {}

    def delete(sid):
        answers[sid] = client.delete(f"/v1/sandboxes/{sid}", timeout=60).status

    threads = [threading.Thread(target=delete, args=(sid,)) for sid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert answers == {sid: 204 for sid in ids}
    assert [sid for sid, pid in inits.items() if running(pid)] == []
    assert not set(ids) & set(client.list_ids())
    agent.settle()
    assert agent.leftovers(ids, zombies=False) == []


def test_paused_sandbox_dies_at_delete(agent, client):
    sid = client.create()["id"]
    init = agent.runc_init_pid(sid)
    assert client.post(f"/v1/sandboxes/{sid}/pause", {}).status == 200
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert not running(init)
    agent.settle()
    assert agent.leftovers([sid], zombies=False) == []


def test_same_id_create_right_after_delete(agent, client):
    sid = "fdel-" + rand_suffix(8).lower()
    first = client.create(id=sid)
    init = agent.runc_init_pid(sid)
    client.sh(sid, "echo old > /tmp/mark")
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    # Waits for the old one's teardown if need be, then makes a new one.
    second = client.create(id=sid)
    assert second["id"] == first["id"] == sid
    assert agent.runc_init_pid(sid) != init
    assert client.sh(sid, "cat /tmp/mark 2>/dev/null || echo none").strip() == "none"
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    agent.settle()
    assert agent.leftovers([sid], zombies=False) == []


def test_deleting_a_claimed_pooled_sandbox(pool_agent):  # noqa: F811
    pa = pool_agent(FLAG)
    before = pa.wait_ready(2)["sandboxes"]
    sbx = pa.c.create(**SHAPE)
    claimed = set(before) - set(pa.pool()["sandboxes"])
    assert len(claimed) == 1, (before, pa.pool())
    name = claimed.pop()
    init = pa.a.runc_init_pid(name)
    assert pa.c.delete(f"/v1/sandboxes/{sbx['id']}").status == 204
    assert not running(init)
    assert_error(pa.c.sandbox(sbx["id"]), 404)
    assert pa.name_leftovers(name) == []  # settles first
    # The pool's own deletes (a removed pool's waiting sandboxes) take the same path.
    waiting = pa.wait_ready(2)["sandboxes"]
    assert pa.c.delete("/v1/pools/warm").status == 204
    # Deleted in the background by the pool's thread (docs/agent-api.md), which may
    # still be pre-starting a kernel in one of them: wait for them to go.
    wait_for(lambda: [n for n in waiting if pa.name_leftovers(n)] == [], 60,
             what="the removed pool's waiting sandboxes to be gone")
    assert pa.a.leftovers(zombies=False) == []


def test_sigterm_with_teardowns_pending_leaves_nothing(templates_dir):
    a = start_agent(f"fdel-term-{rand_suffix(4)}", templates_dir)
    try:
        ids = [a.client.create()["id"] for _ in range(6)]
        for sid in ids:
            assert a.client.delete(f"/v1/sandboxes/{sid}").status == 204
        # At once: the teardowns just queued are finished before the agent exits.
        assert a.signal_and_wait(signal.SIGTERM, timeout=120) == 0
        assert a.leftovers(ids, zombies=False) == []
        a.start()
        assert a.client.list_ids() == []
    finally:
        stop_agent(a)


def test_sigkill_mid_teardown_then_restart_cleans_up(templates_dir):
    a = start_agent(f"fdel-kill-{rand_suffix(4)}", templates_dir)
    try:
        kept = a.client.create()["id"]
        ids = [a.client.create()["id"] for _ in range(6)]
        for sid in ids:
            assert a.client.delete(f"/v1/sandboxes/{sid}").status == 204
        a.kill9()
        a.start()
        # The deleted ones stay deleted (never re-adopted), their remains are
        # removed; the one not deleted is adopted again.
        assert a.client.list_ids() == [kept]
        for sid in ids:
            assert_error(a.client.sandbox(sid), 404)
        assert a.client.sh(kept, "echo ok").strip() == "ok"
        assert a.client.delete(f"/v1/sandboxes/{kept}").status == 204
        assert a.leftovers(ids + [kept], zombies=False) == []
    finally:
        stop_agent(a)
