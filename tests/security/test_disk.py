"""Issue 16, hole 5: disk outside the quota, and host paths in the sandbox's
view of its mounts.

Root in a sandbox with disk: 16Mi writes more than that: into the control
directory /.sandpit (which lived on the host's own filesystem) and everywhere
else it can write on disk. Every write stops at the quota or is refused, and the
host's filesystem does not grow."""

import os

from conftest import REPO

LIMIT_MIB = 16
WRITE_MIB = 24


def as_root(client, sid, script):
    return client.exec(sid, shell=script, user="root", timeout=60, http_timeout=120)


def test_control_dir_takes_no_data(client, agent, make_sandbox):
    sid = make_sandbox(disk=f"{LIMIT_MIB}Mi")["id"]
    host_before = os.statvfs(agent.state_dir)
    r = as_root(client, sid, f"dd if=/dev/zero of=/.sandpit/big bs=1M count={WRITE_MIB}")
    assert r.exit_code != 0, f"{WRITE_MIB} MiB written into /.sandpit: {r}"
    assert "Read-only file system" in r.stderr, r
    ctl = agent.state_dir / "sandboxes" / sid / "disk" / "ctl"
    assert sorted(os.listdir(ctl)) == ["init", "init.sock"]
    host_after = os.statvfs(agent.state_dir)
    grew = (host_before.f_bavail - host_after.f_bavail) * host_after.f_frsize
    assert grew < WRITE_MIB * 1024 * 1024 // 2, f"the host's filesystem lost {grew} bytes"


def test_every_writable_path_hits_the_quota(client, agent, make_sandbox):
    sid = make_sandbox(disk=f"{LIMIT_MIB}Mi")["id"]
    # every directory root can write to, as the sandbox lists it: whatever is
    # writable there must be on the sandbox's disk
    for path in ("/big", "/tmp/big", "/var/tmp/big", "/root/big", "/home/user/big", "/.sandpit/big"):
        r = as_root(client, sid, f"dd if=/dev/zero of={path} bs=1M count={WRITE_MIB}")
        assert r.exit is not None, r
        assert r.exit_code != 0, f"{WRITE_MIB} MiB written to {path} in a {LIMIT_MIB}Mi sandbox: {r}"
        assert "No space left on device" in r.stderr or "Read-only file system" in r.stderr, r
        as_root(client, sid, f"rm -f {path}")
    # and a small write still works
    assert client.sh(sid, "echo ok > /tmp/small && cat /tmp/small") == "ok\n"


def test_mountinfo_shows_no_host_paths(client, agent, sandbox):
    """No state, template or install path: the overlay's layers are given by
    fd, the control and code dirs are dirs of the disk tmpfs, and the init binary and
    the kernel drivers are bound from the agent's copies on a tmpfs of its own
    (share.h), not from where they are installed."""
    sid = sandbox["id"]
    info = client.sh(sid, "cat /proc/self/mountinfo")
    install = REPO / "build"
    for host_path in (agent.state_dir, agent.templates_dir, "/sandboxes/", "/disk/upper", install):
        assert str(host_path) not in info, f"{host_path} shows in the sandbox's mountinfo:\n{info}"
    assert sid not in info, f"the sandbox id (a host directory name) shows in its mountinfo:\n{info}"
    mounts = {line.split()[4]: line for line in info.splitlines()}
    for target, root in (("/.sandpit/init", "/sandpit-init"), ("/.sandpit-kernels", "/kernels")):
        line = mounts[target]
        assert line.split()[3] == root and " - tmpfs sandpit-share " in line, line
        assert "ro" in line.split()[5].split(","), line
    # The copies are read-only on the host too.
    share = agent.state_dir / "share"
    assert (share / "sandpit-init").is_file()
    try:
        (share / "planted").write_text("x")
        raise AssertionError(f"{share} is writable on the host")
    except OSError as e:
        assert e.errno == 30, e  # EROFS
