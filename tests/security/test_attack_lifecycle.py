"""Attacks on the sandbox lifecycle: work sent to a sandbox that is deleted or
paused, a delete racing its own create, an id reused after a delete, code
that tries to outlive its sandbox's timeout or its delete (ignoring SIGTERM,
double forking into a new session), and state carried from one user of a
pooled sandbox to the next. Each ends with the common leak check."""

import concurrent.futures
import threading

from conftest import assert_error, rand_suffix, wait_for

DAEMONIZE = r"""
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.closerange(0, 3)
open("/tmp/escaped", "w").write(str(os.getpid()))
time.sleep(int(sys.argv[1]))
"""


def test_exec_into_a_deleted_sandbox_runs_nothing(client, agent, make_sandbox):
    """A delete, then an exec, a file write and a code run at its id: each
    404, and nothing of the sandbox comes back on the host."""
    sid = make_sandbox()["id"]
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert_error(client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["touch", "/tmp/after"]}), 404)
    assert_error(client.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/after", raw=b"x"), 404)
    assert_error(client.post(f"/v1/sandboxes/{sid}/pause", {}), 404)
    # the killed init may wait a moment for its reaper: dead-but-unreaped is allowed a few seconds
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=10, what="nothing left of the deleted sandbox")


def test_exec_racing_a_delete_leaves_nothing(client, agent, make_sandbox):
    """Execs of a long command are fired at a sandbox while it is deleted:
    each either ran before the delete or fails, and no process of it is left
    on the host."""
    sid = make_sandbox()["id"]
    start = threading.Barrier(5)

    def fire(_):
        start.wait()
        try:
            return client.exec(sid, cmd=["sleep", "3000"], http_timeout=60).status
        except OSError:
            return "dropped"

    def delete():
        start.wait()
        return client.delete(f"/v1/sandboxes/{sid}", timeout=120).status

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        execs = [pool.submit(fire, i) for i in range(4)]
        d = pool.submit(delete)
        assert d.result() == 204
        got = [f.result() for f in execs]
    assert all(s in (200, 404, 409, 500, "dropped") for s in got), got
    assert client.sandbox(sid).status == 404
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=30, what="nothing left of the raced sandbox")


def test_exec_into_a_paused_sandbox_runs_nothing(client, make_sandbox):
    """An exec and a file write at a paused sandbox are refused (409) and
    run nothing later: after the resume the marker is absent."""
    sid = make_sandbox()["id"]
    assert client.post(f"/v1/sandboxes/{sid}/pause", {}).status == 200
    assert_error(client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["touch", "/tmp/queued"]}), 409)
    assert_error(client.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/queued2", raw=b"x"), 409)
    assert client.post(f"/v1/sandboxes/{sid}/resume", {}).status == 200
    assert client.sh(sid, "ls /tmp/queued /tmp/queued2 2>&1; true").count("No such file") == 2


def test_delete_during_create_leaves_nothing(client, agent):
    """A create with a caller-chosen id and deletes of that id fired while it
    is being made: the sandbox is either never listed or deleted, and nothing
    is left."""
    ids = []
    for _ in range(3):
        sid = "race-" + rand_suffix()
        ids.append(sid)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            c = pool.submit(client.post, "/v1/sandboxes", {"template": "host", "id": sid})
            ds = [pool.submit(client.delete, f"/v1/sandboxes/{sid}", timeout=120) for _ in range(2)]
            created = c.result().status
            deleted = [d.result().status for d in ds]
        assert created in (201, 404, 409, 410, 500), created
        assert all(s in (204, 404) for s in deleted), deleted
        if client.sandbox(sid).status == 200:
            assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert not set(ids) & set(client.list_ids())
    wait_for(lambda: agent.leftovers(ids) == [], timeout=30, what="nothing left of the raced creates")


def test_reused_id_starts_clean(client, make_sandbox, unique):
    """Sandbox X leaves files, a daemonized process and a changed hostname
    file; X is deleted and X created again: none of it is in the new one."""
    sid = "reuse-" + unique
    make_sandbox(id=sid)
    client.sh(sid, "echo first > /tmp/mark; echo first > $HOME/mark")
    client.exec(sid, cmd=["python3", "-c", DAEMONIZE, "3001"])
    wait_for(lambda: client.exec(sid, shell="test -s /tmp/escaped").exit_code == 0, timeout=20,
             what="the daemon's pid file")
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    make_sandbox(id=sid)
    out = client.sh(sid, "cat /tmp/mark $HOME/mark /tmp/escaped 2>&1; pgrep -fc '300[1]' || true")
    assert "first" not in out and out.count("No such file") == 3, out
    assert out.strip().splitlines()[-1] == "0", out


def test_double_forked_daemon_dies_with_the_delete(client, agent, make_sandbox):
    """A process that ignores SIGTERM and SIGHUP, double forks and starts a
    new session stays in the sandbox's cgroup and dies with the delete."""
    sid = make_sandbox()["id"]
    r = client.exec(sid, cmd=["python3", "-c", DAEMONIZE, "3002"])
    assert r.exit_code == 0, r
    wait_for(lambda: client.exec(sid, shell="test -s /tmp/escaped").exit_code == 0, timeout=20,
             what="the daemon's pid file")
    host = [p for p, what in agent.sandbox_procs(zombies=False).items() if "3002" in what]
    assert host, "the daemon is not in the sandbox's cgroups (it escaped them)"
    with open(f"/proc/{host[0]}/cgroup") as f:
        assert sid in f.read()
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=30, what="the daemon gone with its sandbox")


def test_sandbox_does_not_survive_its_timeout(client, agent, make_sandbox):
    """Code that ignores SIGTERM and double forks, in a sandbox with a 3 s
    timeout: the sandbox, its processes, cgroups and mounts are gone."""
    sid = make_sandbox(timeout=3)["id"]
    client.exec(sid, cmd=["python3", "-c", DAEMONIZE, "3003"])
    wait_for(lambda: client.sandbox(sid).status == 404, timeout=60, interval=0.2,
             what="the sandbox deleted at its timeout")
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=30, what="nothing left after the timeout")
    assert not [p for p, what in agent.sandbox_procs().items() if "3003" in what]


def test_timeout_cannot_be_made_endless(client, sandbox):
    """Timeouts that would overflow or never fire are refused and leave the
    deadline as it was."""
    sid = sandbox["id"]
    before = client.sandbox(sid).json()["expires_at"]
    for t in (-1, 0, 1e300, 2 ** 64, "inf", None, [600]):
        assert_error(client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": t}), 400)
    assert client.sandbox(sid).json()["expires_at"] == before


def test_pooled_sandbox_is_never_handed_out_twice(client, agent):
    """A pooled sandbox used by one caller (files, a daemon) and deleted is
    never given to the next caller: the next claim is a fresh sandbox with
    none of it."""
    shape = {"template": "host", "cpu": 0.25, "memory": 128 << 20}
    name = "atk" + rand_suffix(5)
    assert client.request("PUT", f"/v1/pools/{name}", body=dict(shape, size=1)).status == 200
    try:
        wait_for(lambda: client.get(f"/v1/pools/{name}").json()["ready"] == 1, 60, what="the pool ready")
        first = client.create(**shape)["id"]
        client.sh(first, "echo one > /tmp/mark; echo one > $HOME/mark")
        client.exec(first, cmd=["python3", "-c", DAEMONIZE, "3004"])
        assert client.delete(f"/v1/sandboxes/{first}").status == 204
        wait_for(lambda: client.get(f"/v1/pools/{name}").json()["ready"] == 1, 60, what="the pool refilled")
        second = client.create(**shape)["id"]
        assert client.get(f"/v1/pools/{name}").json()["claims"] == 2
        out = client.sh(second, "cat /tmp/mark $HOME/mark /tmp/escaped 2>&1; pgrep -fc '300[4]' || true")
        assert "one" not in out and out.count("No such file") == 3, out
        assert out.strip().splitlines()[-1] == "0", out
    finally:
        assert client.delete(f"/v1/pools/{name}").status == 204
        wait_for(lambda: len(agent.sandbox_dirs()) == len(client.list_ids()), 60,
                 what="the pool's waiting sandbox removed")
