"""The OCI runtime per sandbox (docs/templates.md#runtimes): a create's
`runtime` (runc, crun, runsc; a SandboxTemplate's spec.runtime through the
operator) picks the binary and its own --root; a node that cannot run it
answers 501 and keeps nothing.

Each test runs its own agent. Where a runtime other than runc must really run
(this machine's cgroup v1 hybrid is refused by Debian's crun), the agent is
told with --runtime-path that "crun" is a wrapper which logs every call and
hands it to runc: what is tested is that the named runtime is the one called,
with its own root, for every step of the sandbox's life (run, state after a
restart, delete). runsc (gVisor, Debian's package) runs for real: the tests
named test_runsc_*."""

import os
import subprocess

import pytest

from conftest import REPO, assert_error, rand_suffix, start_agent, stop_agent, wait_for
from netlab import lab_fixture, net  # noqa: F401 (a fixture, by name)
from test_network import Lab

lab = lab_fixture(Lab)

CLI_BIN = REPO / "build" / "bin" / "sandpit"


def wrapper(path, log, then="runc", help_text=None):
    """An executable at path that appends its argv to log, then runs `then`
    with them (or, with help_text, prints it for `run --help` and fails the
    rest)."""
    if help_text is None:
        body = f'exec {then} "$@"\n'
    else:
        body = f'[ "$1 $2" = "run --help" ] && {{ printf "%s\\n" "{help_text}"; exit 0; }}\nexit 1\n'
    path.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{body}')
    path.chmod(0o755)
    return path


def calls(log):
    return log.read_text().splitlines() if log.exists() else []


def runtime_leftovers(a):
    """Containers left under the named runtimes' roots (<state>/runtimes/NAME/ID)."""
    root = a.state_dir / "runtimes"
    if not root.is_dir():
        return []
    return [f"{name}/{cid}" for name in os.listdir(root) for cid in os.listdir(root / name)]


@pytest.fixture
def rt_agent(templates_dir, tmp_path):
    started = []

    def start(*runtime_paths):
        args = []
        for p in runtime_paths:
            args += ["--runtime-path", p]
        a = start_agent(f"rt-{rand_suffix(4)}", templates_dir, extra_args=args)
        started.append(a)
        return a

    yield start
    for a in started:
        try:
            if a.alive():
                for sid in a.client.created:
                    a.client.delete(f"/v1/sandboxes/{sid}")
                # A removed pool's sandboxes go in the background.
                wait_for(lambda: not a.leftovers(zombies=False), 60, what="no leftovers")
                assert runtime_leftovers(a) == []
        finally:
            stop_agent(a)


def test_a_named_runtime_runs_the_sandbox_with_its_own_root(rt_agent, tmp_path):
    log = tmp_path / "crun.log"
    a = rt_agent(f"crun={wrapper(tmp_path / 'crun', log)}")
    c = a.client
    sbx = c.create(runtime="crun")
    sid = sbx["id"]
    assert sbx["runtime"] == "crun"
    assert c.sandbox(sid).json()["runtime"] == "crun"
    root = str(a.state_dir / "runtimes" / "crun")
    run = [x for x in calls(log) if " run " in f" {x} " and "--bundle" in x]
    assert len(run) == 1 and f"--root {root} " in run[0] and run[0].endswith(sid), calls(log)
    # Not the default runtime's container: runc's own root does not have it.
    assert sid not in a.runc_ids()
    assert os.path.isdir(os.path.join(root, sid))
    r = c.exec(sid, shell="echo through-crun")
    assert r.exit_code == 0 and r.stdout == "through-crun\n", r
    assert c.delete(f"/v1/sandboxes/{sid}").status == 204
    c.created.remove(sid)
    a.settle()
    assert any(x == f"--root {root} delete --force {sid}" for x in calls(log)), calls(log)
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []


def test_the_default_runtimes_name_is_the_default(rt_agent, tmp_path):
    log = tmp_path / "crun.log"
    a = rt_agent(f"crun={wrapper(tmp_path / 'crun', log)}")
    sbx = a.client.create(runtime="runc")
    assert "runtime" not in sbx
    assert sbx["id"] in a.runc_ids()
    assert calls(log) == []


def test_a_restarted_agent_adopts_and_deletes_through_the_named_runtime(rt_agent, tmp_path):
    log = tmp_path / "crun.log"
    a = rt_agent(f"crun={wrapper(tmp_path / 'crun', log)}")
    sid = a.client.create(runtime="crun")["id"]
    a.kill9()
    a.start()
    root = str(a.state_dir / "runtimes" / "crun")
    assert f"--root {root} state {sid}" in calls(log)
    got = a.client.sandbox(sid).json()
    assert got["state"] == "running" and got["runtime"] == "crun"
    r = a.client.exec(sid, shell="echo adopted")
    assert r.exit_code == 0 and r.stdout == "adopted\n", r
    assert a.client.delete(f"/v1/sandboxes/{sid}").status == 204
    a.client.created.remove(sid)
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []
    assert f"--root {root} delete --force {sid}" in calls(log)


@pytest.mark.parametrize("runtime,message", [
    ("gvisor", "runtime must be runc, crun or runsc"),
    ("/usr/sbin/runc", "runtime must be runc, crun or runsc"),
    (5, "runtime must be a string"),
])
def test_an_unknown_runtime_is_400(agent, runtime, message):
    before = agent.client.list_ids()
    r = agent.client.post("/v1/sandboxes", {"template": "host", "runtime": runtime})
    assert_error(r, 400)
    assert r.json()["message"] == message
    assert agent.client.list_ids() == before


def test_a_runtime_the_node_has_not_got_is_501_and_leaves_nothing(rt_agent, tmp_path):
    a = rt_agent(f"runsc={tmp_path / 'no-such-dir' / 'runsc'}")
    r = a.client.post("/v1/sandboxes", {"template": "host", "runtime": "runsc"})
    assert_error(r, 501)
    assert r.json()["message"] == (f"runtime runsc is not installed on this node "
                                   f"({tmp_path / 'no-such-dir' / 'runsc'} not found)")
    assert a.client.list_ids() == []
    assert a.leftovers() == [] and runtime_leftovers(a) == []


def test_a_runtime_without_preserve_fds_is_501_and_never_run(rt_agent, tmp_path):
    """A runc or crun whose run has no --preserve-fds (which hands
    sandpit-init its ready pipe and control socket) is refused before anything
    is made, not a sandbox that never gets ready."""
    log = tmp_path / "crun.log"
    fake = wrapper(tmp_path / "crun", log, help_text="  -bundle string\n  -detach\n  -pid-file string")
    a = rt_agent(f"crun={fake}")
    for _ in range(2):  # not remembered as usable
        r = a.client.post("/v1/sandboxes", {"template": "host", "runtime": "crun"})
        assert_error(r, 501)
        assert r.json()["message"] == (f"runtime crun ({fake}) cannot run sandpit sandboxes: its run has "
                                       f"no --preserve-fds, which hands sandpit-init its sockets")
    assert calls(log) == ["run --help", "run --help"]
    assert a.leftovers() == [] and runtime_leftovers(a) == []


def test_a_runsc_without_the_flags_used_is_501_and_never_run(rt_agent, tmp_path):
    """runsc needs no --preserve-fds (sandpit-init's channel), but its run is
    given --file-access and --overlay2: a runsc without them is refused with
    what it lacks."""
    log = tmp_path / "runsc.log"
    fake = wrapper(tmp_path / "runsc", log, help_text="  -bundle string\n  -detach\n  -pid-file string")
    a = rt_agent(f"runsc={fake}")
    r = a.client.post("/v1/sandboxes", {"template": "host", "runtime": "runsc"})
    assert_error(r, 501)
    assert r.json()["message"] == (f"runtime runsc ({fake}) cannot run sandpit sandboxes: `{fake} flags` "
                                   f"lists no -file-access")
    assert calls(log) == ["run --help", "flags"]
    assert a.leftovers() == [] and runtime_leftovers(a) == []


def test_a_pool_never_hands_out_a_sandbox_of_another_runtime(rt_agent, templates_dir, tmp_path):
    log = tmp_path / "crun.log"
    a = rt_agent(f"crun={wrapper(tmp_path / 'crun', log)}")
    r = a.client.request("PUT", "/v1/pools/warm", {"template": "host", "size": 1, "kernel": False})
    assert r.status == 200, r
    wait_for(lambda: a.client.get("/v1/pools/warm").json()["ready"] == 1, 60, what="pool ready")
    sbx = a.client.create(runtime="crun")
    assert sbx["runtime"] == "crun"
    assert a.client.get("/v1/pools/warm").json()["claims"] == 0
    assert any("--bundle" in x and x.endswith(sbx["id"]) for x in calls(log)), calls(log)
    # The same shape on the default runtime is the pool's.
    assert "runtime" not in a.client.create()
    assert a.client.get("/v1/pools/warm").json()["claims"] == 1
    assert a.client.delete("/v1/pools/warm").status == 204


def test_cli_create_runtime(rt_agent, tmp_path):
    log = tmp_path / "crun.log"
    a = rt_agent(f"crun={wrapper(tmp_path / 'crun', log)}")
    cli = [str(CLI_BIN), "--server", f"unix://{a.socket}"]
    out = subprocess.run(cli + ["create", "--template", "host", "--runtime", "crun"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    sid = out.stdout.strip()
    a.client.created.append(sid)
    assert a.client.sandbox(sid).json()["runtime"] == "crun"
    bad = subprocess.run(cli + ["create", "--template", "host", "--runtime", "gvisor"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and bad.stdout == ""
    assert bad.stderr == "sandpit: runtime must be runc, crun or runsc\n"


# --- gVisor (Debian's runsc, mk/deps.sh) ------------------------------------
#
# runsc has no `run --preserve-fds`: sandpit-init gets a socket pair as its
# stdin instead and each conversation is a new socket pair sent over it
# (docs/init-protocol.md#channel). Real runsc, no wrapper.

RUNSC = "/usr/bin/runsc"


@pytest.fixture
def runsc_agent(rt_agent):
    assert os.access(RUNSC, os.X_OK), "runsc is not installed (mk/deps.sh installs it)"
    return rt_agent()


def test_runsc_runs_a_sandbox_under_gvisor(runsc_agent):
    a = runsc_agent
    c = a.client
    sbx = c.create(runtime="runsc")
    sid = sbx["id"]
    assert sbx["runtime"] == "runsc"
    # runsc's own state, under its own root.
    assert os.path.isfile(a.state_dir / "runtimes" / "runsc" / f"{sid}_sandbox:{sid}.state")
    # gVisor's own kernel answers (it says 4.4.0), not the host's.
    r = c.exec(sid, shell="uname -r; head -c 13 /proc/version")
    assert r.exit_code == 0 and r.stdout == "4.4.0\nLinux version" and os.uname().release != "4.4.0", r
    r = c.exec(sid, shell="id -un; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "user\n", "err\n"), r
    assert c.delete(f"/v1/sandboxes/{sid}").status == 204
    c.created.remove(sid)
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []


def put_file(c, sid, path, data):
    return c.request("PUT", f"/v1/sandboxes/{sid}/files?path={path}", raw=data,
                     headers={"Content-Type": "application/octet-stream"})


def test_runsc_files_env_secrets_stdin_and_pause(runsc_agent):
    c = runsc_agent.client
    r = c.post("/v1/sandboxes", {"template": "host", "runtime": "runsc", "env": {"PLAIN": "visible"},
                                 "secret_env": {"API_KEY": "s3cr3t-value"}})
    assert r.status == 201, r
    sid = r.json()["id"]
    c.created.append(sid)
    # Files written on the host are seen inside at once, and back (the root
    # mount is shared, not gVisor's cached copy).
    assert put_file(c, sid, "/home/user/in.txt", b"from-host\n").status == 200
    assert c.sh(sid, "cat /home/user/in.txt; echo from-sandbox > /home/user/out.txt") == "from-host\n"
    assert put_file(c, sid, "/home/user/in.txt", b"changed\n").status == 200
    assert c.sh(sid, "cat /home/user/in.txt") == "changed\n"
    g = c.get(f"/v1/sandboxes/{sid}/files?path=/home/user/out.txt")
    assert g.status == 200 and g.body == b"from-sandbox\n", g
    # env, and the secret env masked in output
    out = c.exec(sid, shell='echo "key=$API_KEY plain=$PLAIN"; test "$API_KEY" = s3cr3t-value')
    assert out.exit_code == 0 and out.stdout == "key=*** plain=visible\n", out
    # stdin streams through the per-conversation socket pair
    r = c.exec(sid, cmd=["cat"], stdin="hello\nworld")
    assert r.exit_code == 0 and r.stdout == "hello\nworld", r
    # pause / resume
    assert c.post(f"/v1/sandboxes/{sid}/pause", {}).status == 200
    assert c.sandbox(sid).json()["state"] == "paused"
    assert c.post(f"/v1/sandboxes/{sid}/resume", {}).status == 200
    assert c.sh(sid, "echo after-resume") == "after-resume\n"


def test_runsc_a_restarted_agent_gets_a_new_channel_and_deletes(runsc_agent):
    """The channel is the agent's end of a socket pair: gone with a kill -9.
    The restarted agent gets a new one through `runsc exec sandpit-init
    --rechannel`, proven by the key in the sandbox's dir."""
    a = runsc_agent
    sid = a.client.create(runtime="runsc")["id"]
    a.client.sh(sid, "echo kept > /tmp/kept; sleep 1000 >/dev/null 2>&1 &")
    a.kill9()
    a.start()
    got = a.client.sandbox(sid).json()
    assert got["state"] == "running" and got["runtime"] == "runsc"
    assert a.client.sh(sid, "cat /tmp/kept") == "kept\n"
    # A second restart: the key is still the one init holds.
    a.kill9()
    a.start()
    assert a.client.sh(sid, "echo again") == "again\n"
    assert a.client.delete(f"/v1/sandboxes/{sid}").status == 204
    a.client.created.remove(sid)
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []


def test_runsc_a_wedged_exec_at_restart_gives_up_on_the_sandbox(rt_agent, tmp_path):
    """A `runsc exec ... --rechannel` that never ends (a wedged runsc) does not
    hold the restarted agent's start: it is killed after 10 s and the sandbox
    it could not reach is not adopted but removed, saying why."""
    assert os.access(RUNSC, os.X_OK), "runsc is not installed (mk/deps.sh installs it)"
    log, hang, fake = tmp_path / "calls", tmp_path / "hang", tmp_path / "runsc"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                    f'case "$*" in *--rechannel*) [ -e {hang} ] && exec sleep 600;; esac\n'
                    f'exec {RUNSC} "$@"\n')
    fake.chmod(0o755)
    a = rt_agent(f"runsc={fake}")
    sid = a.client.create(runtime="runsc")["id"]
    a.kill9()
    hang.touch()
    since = a.log_size()
    a.start()
    assert any(c.endswith(f"exec {sid} /.sandpit/init --rechannel") for c in calls(log)), calls(log)
    assert a.client.sandbox(sid).status == 404
    a.client.created.remove(sid)
    tail = a.log_tail(since=since)
    assert "exec did not end within 10 s: killed" in tail and "not re-adopted" in tail, tail
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []


def test_runsc_a_paused_sandbox_survives_a_restart_and_resumes(runsc_agent):
    """runsc's own pause: its state and exec hang on a sandbox the cgroup
    freezer holds. Adopted while paused, the sandbox gets its channel at the
    resume."""
    a = runsc_agent
    sid = a.client.create(runtime="runsc")["id"]
    assert a.client.post(f"/v1/sandboxes/{sid}/pause", {}).status == 200
    a.kill9()
    a.start()
    assert a.client.sandbox(sid).json()["state"] == "paused"
    assert a.client.post(f"/v1/sandboxes/{sid}/resume", {}).status == 200
    assert a.client.sh(sid, "echo resumed") == "resumed\n"
    # Deleted while paused: nothing left.
    assert a.client.post(f"/v1/sandboxes/{sid}/pause", {}).status == 200
    assert a.client.delete(f"/v1/sandboxes/{sid}").status == 204
    a.client.created.remove(sid)
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []


def test_runsc_egress_policies_hold(net):
    """gVisor sends through the host kernel's stack in the sandbox's own netns
    (--network=host there): the veth, the nftables chain and the DNS proxy of
    test_network.py's lab apply as under runc."""
    from test_network import METADATA, NODE, OUTSIDE, OUTSIDE2, probe

    deny = net.create(runtime="runsc")
    assert deny["runtime"] == "runsc" and deny["network"]["egress"] == "deny"
    got = probe(net, deny["id"], f"tcp:{OUTSIDE}:7001", f"udp:{OUTSIDE}:7003", f"tcp:{NODE}:7001",
                f"tcp:{METADATA}:7001", "dns:example.test")
    assert not any(got.values()), got
    allow = net.create(runtime="runsc", network={"egress": "allowlist", "allow": [
        {"cidr": f"{OUTSIDE}/32", "ports": [7001], "protocol": "tcp"}]})
    got = probe(net, allow["id"], f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002", f"tcp:{OUTSIDE2}:7001",
                f"tcp:{METADATA}:7001", f"tcp:{NODE}:7001", "dns:example.test")
    assert got == {f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False, f"tcp:{OUTSIDE2}:7001": False,
                   f"tcp:{METADATA}:7001": False, f"tcp:{NODE}:7001": False, "dns:example.test": OUTSIDE}, got


def test_runsc_pty(runsc_agent):
    c = runsc_agent.client
    sid = c.create(runtime="runsc")["id"]
    r = c.exec(sid, shell="tty; stty size; exit 5", pty={"cols": 91, "rows": 17})
    from test_pty import pty_output
    out = pty_output(r)
    assert out.startswith(b"/dev/pts/") and b"\r\n17 91\r\n" in out, out
    assert r.exit_code == 5


def test_runsc_run_code(runsc_agent):
    from test_code import ok, run_code
    c = runsc_agent.client
    sid = c.create(runtime="runsc", template="default", memory="1Gi")["id"]
    a = ok(run_code(c, sid, "x = 41"))
    b = ok(run_code(c, sid, "x + 1"))
    assert b.text == "42" and b.count == a.count + 1, (a, b)


def test_runsc_as_the_nodes_default(templates_dir):
    """--runtime runsc: a create that names no runtime runs under gVisor."""
    a = start_agent(f"rt-{rand_suffix(4)}", templates_dir, extra_args=["--runtime", RUNSC])
    try:
        sbx = a.client.create()
        assert "runtime" not in sbx
        assert a.client.sh(sbx["id"], "uname -r") == "4.4.0\n"
        a.kill9()
        a.start()
        assert a.client.sh(sbx["id"], "echo adopted") == "adopted\n"
        assert a.client.delete(f"/v1/sandboxes/{sbx['id']}").status == 204
        a.client.created.remove(sbx["id"])
        wait_for(lambda: not a.leftovers(zombies=False), 60, what="no leftovers")
        assert os.listdir(a.state_dir / "runc") == []
    finally:
        stop_agent(a)


def test_runsc_a_claimed_pooled_sandbox_has_its_own_hostname(templates_dir):
    """runc's claim sets the id as the hostname through the container's UTS
    namespace; gVisor's is the sentry's own, which only a process inside can
    change: `runsc exec --cap CAP_SYS_ADMIN ... sandpit-init --hostname ID`."""
    a = start_agent(f"rt-{rand_suffix(4)}", templates_dir, extra_args=["--runtime", RUNSC])
    try:
        r = a.client.request("PUT", "/v1/pools/warm", {"template": "host", "size": 1, "kernel": False})
        assert r.status == 200, r
        wait_for(lambda: a.client.get("/v1/pools/warm").json()["ready"] == 1, 90, what="pool ready")
        sid = a.client.create()["id"]
        assert a.client.get("/v1/pools/warm").json()["claims"] == 1
        assert a.client.sh(sid, "uname -r; hostname; cat /proc/sys/kernel/hostname") == f"4.4.0\n{sid}\n{sid}\n"
        # The sandbox's own root has no CAP_SYS_ADMIN: the same call fails there.
        r = a.client.exec(sid, cmd=["/.sandpit/init", "--hostname", "mine"], user="root")
        assert r.status != 200 or r.exit_code != 0, r
        assert a.client.sh(sid, "hostname") == f"{sid}\n"
        assert a.client.delete("/v1/pools/warm").status == 204
        assert a.client.delete(f"/v1/sandboxes/{sid}").status == 204
        a.client.created.remove(sid)
        wait_for(lambda: not a.leftovers(zombies=False), 60, what="no leftovers")
    finally:
        stop_agent(a)


HANG = "3601"  # the fake runtime's sleep, found by its argv


def hanging_runsc(tmp_path, commands):
    """A runsc that, once tmp_path/hang exists, never ends the given commands:
    its sh waits on a child sleep (not exec'd), which holds the same stdout, so
    only a kill of the whole process group ends it all."""
    log, hang, fake = tmp_path / "calls", tmp_path / "hang", tmp_path / "runsc"
    pattern = "|".join(f"*--root\\ *\\ {c}\\ *" for c in commands)
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                    f'case "$*" in {pattern}) [ -e {hang} ] && {{ sleep {HANG}; exit 0; }};; esac\n'
                    f'exec {RUNSC} "$@"\n')
    fake.chmod(0o755)
    return fake, hang, log


def fake_sleeps():
    out = subprocess.run(["pgrep", "-f", f"^sleep {HANG}$"], capture_output=True, text=True)
    return out.stdout.split()


def test_runsc_a_hung_pause_is_504_and_the_sandbox_runs_on(rt_agent, tmp_path):
    """A `runsc pause` that never ends is killed with what it started after
    10 s: the request answers 504 saying so, and the sandbox stays running."""
    assert os.access(RUNSC, os.X_OK), "runsc is not installed (mk/deps.sh installs it)"
    fake, hang, log = hanging_runsc(tmp_path, ["pause"])
    a = rt_agent(f"runsc={fake}")
    sid = a.client.create(runtime="runsc")["id"]
    hang.touch()
    since = a.log_size()
    body = assert_error(a.client.post(f"/v1/sandboxes/{sid}/pause", {}), 504)
    assert body["message"] == f"cannot freeze sandbox {sid}: {fake} pause did not end within 10 s", body
    assert any(c.endswith(f"pause {sid}") for c in calls(log)), calls(log)
    assert f"{fake} pause did not end within 10 s: killed" in a.log_tail(since=since)
    assert fake_sleeps() == []
    assert a.client.sandbox(sid).json()["state"] == "running"
    assert a.client.sh(sid, "echo still-running") == "still-running\n"
    assert a.client.delete(f"/v1/sandboxes/{sid}").status == 204
    a.client.created.remove(sid)
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []


def test_runsc_a_hung_state_and_delete_give_up_and_leak_nothing(rt_agent, tmp_path):
    """A restarted agent whose `runsc state` never ends does not adopt the
    sandbox (killed after 30 s); its teardown's `runsc delete` hangs too and
    is killed: the cgroup is killed instead, and nothing of the sandbox runs or
    stays mounted. What runsc keeps (its state) and the sandbox's dir the next
    start removes."""
    assert os.access(RUNSC, os.X_OK), "runsc is not installed (mk/deps.sh installs it)"
    fake, hang, log = hanging_runsc(tmp_path, ["state", "delete"])
    a = rt_agent(f"runsc={fake}")
    sid = a.client.create(runtime="runsc")["id"]
    a.kill9()
    hang.touch()
    since = a.log_size()
    a.start(timeout=180)
    tail = a.log_tail(lines=200, since=since)
    assert f"{fake} state did not end within 30 s: killed" in tail, tail
    assert f"{fake} delete did not end within 30 s: killed" in tail, tail
    assert any(c.endswith(f"state {sid}") for c in calls(log)), calls(log)
    assert any(c.endswith(f"delete --force {sid}") for c in calls(log)), calls(log)
    assert a.client.sandbox(sid).status == 404
    a.client.created.remove(sid)
    assert fake_sleeps() == []
    # Nothing runs, nothing is mounted. Left for the next start: runsc's
    # state, the sandbox's dir and, empty, the cgroup in the name=systemd
    # hierarchy, which runsc joins and only its own delete removes.
    left = a.leftovers([sid], zombies=False)
    systemd = [x for x in left if x.startswith("cgroup /sys/fs/cgroup/systemd/")]
    assert not [x for x in left if x.startswith(("process", "mount", "cgroup", "netns")) and x not in systemd], left
    for c in systemd:
        with open(c.split(" ", 1)[1] + "/cgroup.procs") as f:
            assert f.read() == "", c
    # The runtime answers again: the next start removes the rest.
    hang.unlink()
    a.kill9()
    a.start()
    assert a.leftovers([sid], zombies=False) == [] and runtime_leftovers(a) == []
