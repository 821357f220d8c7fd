"""Cleanup and recovery: delete releases everything; the agent survives its own
SIGKILL/SIGTERM and re-adopts (or cleans) its sandboxes."""

import glob
import os
import signal

from conftest import assert_error, wait_for


def test_delete_releases_everything(client, agent, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "echo data > /tmp/file; sleep 1000 >/dev/null 2>&1 &")
    # while it runs, the host shows its pieces (so the leak check can see them)
    assert any(sid in m for m in agent.mounts_under_state()), agent.mounts_under_state()
    assert any(c.endswith("/" + sid) for c in agent.cgroup_children())
    assert sid in agent.runc_ids()
    assert sid in agent.sandbox_dirs()
    assert agent.sandbox_procs(), "no process in the sandbox's cgroup"
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    # 204 means done: nothing left right away
    assert agent.leftovers([sid], zombies=False) == []


def host_procs_with(word):
    found = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                if word.encode() in f.read():
                    found.append(int(d[6:]))
        except OSError:
            pass
    return found


def test_delete_kills_forked_tree(client, agent, sandbox):
    sid = sandbox["id"]
    # orphans (double fork), a new session, and a deep chain
    script = ("i=0; while [ $i -lt 30 ]; do (sleep 987654 &) ; i=$((i+1)); done; "
              "setsid sleep 987654 & "
              "sh -c 'sh -c \"sleep 987654 & sleep 987654\" & sleep 987654' & ")
    r = client.exec(sid, shell="{ " + script + "} >/dev/null 2>&1; echo forked")
    assert r.exit_code == 0 and "forked" in r.stdout, r
    wait_for(lambda: len(host_procs_with("987654")) >= 33, timeout=15, what="the tree started")
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    left = host_procs_with("987654")
    assert left == [], f"processes of a deleted sandbox still alive on the host: {left}"


def test_sigkill_restart_readopts(client, agent, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "echo kept > /tmp/marker")
    bg = client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sleep", "600"], "background": True})
    assert bg.status == 201, bg
    agent.kill9()
    # the sandbox does not depend on the agent process
    assert sid in agent.runc_ids()
    agent.start()
    g = client.sandbox(sid)
    assert g.status == 200, g
    assert g.json()["state"] == "running"
    assert sid in client.list_ids()
    assert client.sh(sid, "cat /tmp/marker") == "kept\n"
    assert client.sh(sid, "id -u") == "1000\n"
    # and it can still be deleted cleanly (leak check)
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert agent.leftovers([sid], zombies=False) == []


def test_sigterm_leaves_sandboxes_for_readoption(client, agent, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "echo kept > /tmp/marker")
    rc = agent.signal_and_wait(signal.SIGTERM)
    assert rc == 0, f"agent exited {rc} on SIGTERM"
    assert sid in agent.runc_ids(), "SIGTERM removed the sandbox (it must keep running)"
    agent.start()
    assert client.sandbox(sid).json()["state"] == "running"
    assert client.sh(sid, "cat /tmp/marker") == "kept\n"


def test_timeout_survives_restart(client, agent):
    sid = client.create(timeout=4)["id"]
    agent.kill9()
    agent.start()
    wait_for(lambda: client.sandbox(sid).status == 404, timeout=30, interval=0.2,
             what="sandbox expired by the restarted agent")


def test_dead_init_cleaned_on_restart(client, agent, sandbox):
    sid = sandbox["id"]
    init_pid = agent.runc_init_pid(sid)
    agent.kill9()
    os.kill(init_pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{init_pid}") or
             open(f"/proc/{init_pid}/stat").read().split()[2] == "Z",
             timeout=10, what="sandbox init died")
    agent.start()
    # the agent must not report it running, nor run commands in it
    r = client.sandbox(sid)
    assert r.status == 404 or r.json()["state"] == "exited", r
    e = client.exec(sid, cmd=["true"])
    assert e.status in (404, 409), e
    # its remains are cleaned (by the agent itself, or by the delete of an
    # `exited` sandbox): checked by the leak check
    if r.status == 200:
        assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=10, what=f"remains of {sid} cleaned")


def test_exited_state_when_init_dies_while_running(client, agent, sandbox):
    """Doc: state `exited` when the sandbox's init process died; the sandbox then
    only awaits deletion (exec answers 409)."""
    sid = sandbox["id"]
    os.kill(agent.runc_init_pid(sid), signal.SIGKILL)
    wait_for(lambda: client.sandbox(sid).status == 404 or client.sandbox(sid).json()["state"] == "exited",
             timeout=15, what="agent noticed the dead init")
    r = client.sandbox(sid)
    if r.status == 200:
        e = client.exec(sid, cmd=["true"])
        assert e.status == 409, e
        assert_error(client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}), 409)
        assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=10, what=f"remains of {sid} cleaned")


def test_restart_with_many_sandboxes(client, agent):
    ids = [client.create()["id"] for _ in range(5)]
    agent.kill9()
    agent.start()
    assert set(ids) <= set(client.list_ids())
    for sid in ids:
        assert client.sh(sid, "echo $((6*7))") == "42\n"
    for sid in ids:
        assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert agent.leftovers(ids, zombies=False) == []
