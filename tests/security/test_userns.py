"""User namespaces (issue 16, hole 7): written as the attacks.

Without them every sandbox's uid 1000 is the host's uid 1000, so the kernel's
per-user counts are shared: one sandbox holding all of its user's inotify
instances made inotify_init1() fail in another. With --userns=on each sandbox
is its own range of host ids, root inside is an unprivileged host id, and its
ranges are never handed out twice, leaked on delete, on a failed create or
across an agent restart. Each agent here sets --userns itself, so the module
means the same whatever the default (and SANDPIT_IT_USERNS) is."""

import ctypes
import json
import os

import pytest

from conftest import start_agent, stop_agent, wait_for

SIZE = 65536
UINT32_MAX = 2**32 - 1

# Opens inotify instances until the kernel refuses one, keeps them open and
# says how many it got; runs in the background until the sandbox goes.
HOLD = r"""
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while len(fds) < 100000:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
err = ctypes.get_errno()
with open("/tmp/held.tmp", "w") as f:
    f.write("%d %d" % (len(fds), err))
os.rename("/tmp/held.tmp", "/tmp/held")
time.sleep(3600)
"""

# One inotify instance: the errno, 0 when it worked.
ONE = r"""
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
print(json.dumps({"fd": fd, "errno": 0 if fd >= 0 else ctypes.get_errno()}))
"""


def py(client, sid, code, user="user"):
    r = client.exec(sid, cmd=["python3", "-c", code], user=user, timeout=60)
    assert r.status == 200 and r.exit_code == 0, r
    return json.loads(r.stdout.strip().splitlines()[-1])


def uid_map(client, sid):
    r = client.exec(sid, cmd=["cat", "/proc/self/uid_map"], user="root", timeout=30)
    assert r.status == 200 and r.exit_code == 0, r
    return [tuple(int(x) for x in ln.split()) for ln in r.stdout.strip().splitlines()]


def host_base(client, sid):
    m = uid_map(client, sid)
    assert len(m) == 1 and m[0][0] == 0, m
    return m[0][1]


def hold_all_inotify(client, sid):
    """The attack: the sandbox's user takes every inotify instance it can get."""
    r = client.post(f"/v1/sandboxes/{sid}/exec",
                    {"cmd": ["python3", "-c", HOLD], "user": "user", "background": True})
    assert r.status == 201, r
    out = wait_for(lambda: (q := client.exec(sid, cmd=["cat", "/tmp/held"], timeout=30)).exit_code == 0
                   and q.stdout, 60, what="the holder filled its inotify instances")
    n, err = (int(x) for x in out.split())
    assert err == 24 and 0 < n < 100000, (n, err)  # EMFILE: it did reach the limit
    return n


@pytest.fixture(scope="module")
def ns_agent(templates_dir):
    a = start_agent("userns", templates_dir, extra_args=["--userns", "on"])
    yield a
    stop_agent(a)


@pytest.fixture(scope="module")
def off_agent(templates_dir):
    a = start_agent("nouserns", templates_dir, extra_args=["--userns", "off"])
    yield a
    stop_agent(a)


def test_inotify_exhaustion_does_not_reach_another_sandbox(ns_agent):
    c = ns_agent.client
    a = c.create(template="host")["id"]
    b = c.create(template="host")["id"]
    hold_all_inotify(c, a)
    got = py(c, b, ONE)
    assert got["errno"] == 0 and got["fd"] >= 0, got
    # and the host's own uid 1000 is not charged either
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:
        os.setgid(1000)
        os.setuid(1000)
        fd = libc.inotify_init1(0)
        os._exit(0 if fd >= 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_without_userns_the_attack_still_works(off_agent):
    """--userns=off is the old behaviour: the same attack blocks the other
    sandbox (so the test above can fail), and root inside is host root."""
    c = off_agent.client
    a = c.create(template="host")["id"]
    b = c.create(template="host")["id"]
    n = hold_all_inotify(c, a)
    try:
        got = py(c, b, ONE)
        assert got["fd"] < 0 and got["errno"] == 24, (n, got)
        assert uid_map(c, b) == [(0, 0, UINT32_MAX)]
    finally:
        c.delete(f"/v1/sandboxes/{a}")  # the host's uid 1000 gets its instances back


def test_root_inside_is_an_unprivileged_host_id(ns_agent):
    c = ns_agent.client
    sid = c.create(template="host")["id"]
    base = host_base(c, sid)
    assert base >= SIZE and uid_map(c, sid) == [(0, base, SIZE)]
    r = c.exec(sid, shell="id -u; touch /tmp/by-root", user="root", timeout=30)
    assert r.status == 200 and r.exit_code == 0, r
    assert r.stdout.splitlines()[0] == "0", r.stdout
    r = c.exec(sid, cmd=["touch", "/tmp/by-user"], user="user", timeout=30)
    assert r.status == 200 and r.exit_code == 0, r
    # seen from the host (through init's root), what they made is the mapped ids'
    root = f"/proc/{ns_agent.runc_init_pid(sid)}/root"
    st = os.stat(f"{root}/tmp/by-root")
    assert (st.st_uid, st.st_gid) == (base, base), st
    st = os.stat(f"{root}/tmp/by-user")
    assert st.st_uid == base + 1000, st
    # init itself is not host root
    with open(f"/proc/{ns_agent.runc_init_pid(sid)}/status") as f:
        uids = next(ln for ln in f if ln.startswith("Uid:")).split()[1:]
    assert uids == [str(base)] * 4, uids
    # inside, the user still owns its home and root its files
    r = c.exec(sid, shell="stat -c '%u %g' /tmp/by-root /tmp/by-user \"$HOME\"", user="user", timeout=30)
    assert r.status == 200 and r.exit_code == 0, r
    owners = r.stdout.split("\n")
    assert owners[0] == "0 0" and owners[1].split()[0] == "1000" and owners[2].split()[0] == "1000", owners


def test_files_api_acts_as_the_sandbox_users(ns_agent):
    c = ns_agent.client
    sid = c.create(template="host")["id"]
    base = host_base(c, sid)
    for user, uid in (("user", 1000), ("root", 0)):
        r = c.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/api-{user}&user={user}", raw=b"x")
        assert r.status in (200, 201, 204), r
        r = c.exec(sid, cmd=["stat", "-c", "%u", f"/tmp/api-{user}"], timeout=30)
        assert r.status == 200 and r.stdout.strip() == str(uid), r
        st = os.stat(f"/proc/{ns_agent.runc_init_pid(sid)}/root/tmp/api-{user}")
        assert st.st_uid == base + uid, st
    # the user cannot write where it could not inside (root's 0700 dir)
    r = c.exec(sid, shell="mkdir -m 700 /tmp/rootonly", user="root", timeout=30)
    assert r.status == 200 and r.exit_code == 0, r
    r = c.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/rootonly/x&user=user", raw=b"x")
    assert r.status in (400, 403), r


def test_two_sandboxes_get_disjoint_ranges(ns_agent):
    c = ns_agent.client
    bases = sorted(host_base(c, c.create(template="host")["id"]) for _ in range(2))
    assert bases[1] - bases[0] >= SIZE, bases


@pytest.fixture
def two_range_agent(templates_dir):
    """An agent whose table holds exactly two ranges: the top of the id space."""
    base = UINT32_MAX - 1 - 2 * SIZE
    a = start_agent("userns2", templates_dir,
                    extra_args=["--userns", "on", "--userns-base", str(base), "--userns-size", str(SIZE)])
    a.base = base
    yield a
    stop_agent(a)


def test_ranges_are_freed_and_never_handed_out_twice(two_range_agent):
    a = two_range_agent
    c = a.client
    s1 = c.create(template="host")["id"]
    s2 = c.create(template="host")["id"]
    assert {host_base(c, s1), host_base(c, s2)} == {a.base, a.base + SIZE}
    # all taken: the create fails and leaves nothing
    r = c.post("/v1/sandboxes", {"template": "host"})
    assert r.status >= 500 and "host id range" in r.json()["message"], r
    # a restarted agent re-adopts both and still hands neither out
    a.restart()
    r = c.post("/v1/sandboxes", {"template": "host"})
    assert r.status >= 500 and "host id range" in r.json()["message"], r
    assert c.get(f"/v1/sandboxes/{s1}").status == 200
    # a delete gives its range back
    freed = host_base(c, s1)
    assert c.delete(f"/v1/sandboxes/{s1}").status in (200, 204)
    wait_for(lambda: not a.teardown_pending(), 60, what="teardown")
    s3 = c.create(template="host")["id"]
    assert host_base(c, s3) == freed
    # a create that fails after taking a range gives it back too
    assert c.delete(f"/v1/sandboxes/{s3}").status in (200, 204)
    wait_for(lambda: not a.teardown_pending(), 60, what="teardown")
    r = c.post("/v1/sandboxes", {"template": "host", "start_cmd": {
        "command": ["sh", "-c", "exit 7"], "wait_for_port": 8126, "ready_timeout": 600}})
    assert r.status >= 400, r
    s4 = c.create(template="host")["id"]
    assert host_base(c, s4) == freed


def test_a_state_dir_sandboxes_cannot_reach_is_refused_at_start(templates_dir):
    """With user namespaces a sandbox's root (an unprivileged host id) walks
    the path to its rootfs: a state dir below a directory others cannot
    search is refused when the agent starts, with the directory and the fix
    named, not met as runc's "permission denied" at the first create. The
    directories the agent makes itself above it are searchable."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path
    from conftest import AGENT_BIN, INIT_BIN, cgroup_controller_dirs
    tmp_path = Path(tempfile.mkdtemp(prefix="sandpit-it-userns-"))  # below /tmp: searchable
    tmp_path.chmod(0o711)
    closed = tmp_path / "closed"
    closed.mkdir()
    closed.chmod(0o700)
    parent = f"sandpit-it-{os.getpid()}-closed"
    argv = [str(AGENT_BIN), "--standalone", "--userns", "on", "--socket", str(tmp_path / "a.sock"),
            "--templates-dir", str(templates_dir), "--init", str(INIT_BIN), "--cgroup-parent",
            parent, "--log-format", "text"]
    p = subprocess.run(argv + ["--state-dir", str(closed / "state")], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert f"{closed} is mode 0700: make it searchable (chmod o+x) or use --userns=off" in p.stderr, p.stderr
    assert not (closed / "state" / "share").is_mount()
    # The directories it makes itself above its state dir are searchable.
    made = tmp_path / "made" / "deeper" / "state"
    proc = subprocess.Popen(argv + ["--state-dir", str(made)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "a.sock").exists() or proc.poll() is not None, 30,
                 what="the agent serving")
        assert proc.poll() is None, proc.stderr.read()
        for d in (made.parent.parent, made.parent, made):
            assert d.stat().st_mode & 0o7777 == 0o711, (d, oct(d.stat().st_mode))
    finally:
        proc.terminate()
        proc.wait(30)
    assert not (made / "share").is_mount()
    shutil.rmtree(tmp_path)
    for ctl in cgroup_controller_dirs():  # the parent cgroup an agent leaves for the next one
        if (ctl / parent).is_dir():
            (ctl / parent).rmdir()


def sandbox_mounts(agent, sid):
    """The node's mount points under a sandbox's directory, relative to it."""
    d = str(agent.state_dir / "sandboxes" / sid) + "/"
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4][len(d):] for line in f if line.split()[4].startswith(d))


@pytest.mark.parametrize("which", ["ns_agent", "off_agent"])
def test_a_sandbox_adds_two_mounts_to_the_node(request, which):
    """Each mount in the node's table costs every later create (runc reads the
    whole table, each new mount namespace copies it): a sandbox adds its disk
    tmpfs and its overlay, and nothing else, with or without a user namespace.
    The user namespace is joined by fd, not pinned; ctl and code are dirs of the
    disk. Its control socket and code sockets work all the same."""
    agent = request.getfixturevalue(which)
    c = agent.client
    sid = c.create(template="host")["id"]
    try:
        assert sandbox_mounts(agent, sid) == ["disk", "rootfs"]
        assert c.sh(sid, "hostname") == f"{sid}\n"
        ctl = agent.state_dir / "sandboxes" / sid / "disk" / "ctl"
        assert sorted(os.listdir(ctl)) == ["init", "init.sock"]
    finally:
        c.delete(f"/v1/sandboxes/{sid}")
    wait_for(lambda: not sandbox_mounts(agent, sid), 30, what="the sandbox's mounts gone")
