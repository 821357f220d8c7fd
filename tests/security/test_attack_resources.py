"""Attacks on the node's resources from inside a sandbox: a fork bomb, a
memory bomb (direct and under a shell), filling every writable filesystem, and
an inode bomb. Each must stay within the sandbox's own limits (read back from
its cgroups on the host), be reported where the API promises it, leave a
neighbour sandbox working, and leave nothing behind once the sandbox is deleted
(the common leak check runs after every test)."""

import json
import os

import pytest

from conftest import read_int, wait_for

FORK_BOMB = r"""
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


def cg_events(agent, sid, controller, name):
    return dict(line.split() for line in (agent.cgroup_dir(controller, sid) / name).read_text().splitlines())


def test_fork_bomb_bounded_and_deletable(client, agent, make_sandbox):
    sid = make_sandbox(pids=64)["id"]
    other = make_sandbox()["id"]
    pids_dir = agent.cgroup_dir("pids", sid)
    r = client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["python3", "-c", FORK_BOMB], "background": True})
    assert r.status == 201, r
    wait_for(lambda: int(cg_events(agent, sid, "pids", "pids.events").get("max", 0)) > 0, timeout=60,
             what="the pids limit refusing forks")
    assert read_int(pids_dir / "pids.current") <= 64
    # the neighbour is not starved of processes
    assert client.sh(other, "echo ok") == "ok\n"
    # the bomb is still running: the delete must kill every process of it
    assert read_int(pids_dir / "pids.current") >= 32
    r = client.delete(f"/v1/sandboxes/{sid}", timeout=120)
    assert r.status == 204, r
    assert client.sandbox(sid).status == 404
    # delete answers once every process is dead; the cgroup goes in the teardown
    agent.settle()
    assert not pids_dir.exists(), f"{pids_dir} left after the delete's teardown"


MEMORY_BOMB = "b = []\nwhile True:\n    b.append(bytearray(1 << 20))\n"


@pytest.mark.parametrize("how", ["direct", "under sh -c"])
def test_memory_bomb_oom_killed_and_reported(client, agent, make_sandbox, how):
    sid = make_sandbox(memory="64Mi")["id"]
    other = make_sandbox()["id"]
    if how == "direct":
        r = client.exec(sid, cmd=["python3", "-c", MEMORY_BOMB], timeout=120)
    else:
        r = client.exec(sid, shell=f"python3 -c '{MEMORY_BOMB}'; exit $?", timeout=120)
    assert r.exit is not None, r
    assert r.exit["timed_out"] is False, r.exit
    assert r.exit["oom_killed"] is True, f"{how}: the OOM kill was not reported: {r.exit}"
    assert client.sandbox(sid).json()["oom_kills"] >= 1
    mem = agent.cgroup_dir("memory", sid)
    assert read_int(mem / "memory.max_usage_in_bytes") <= read_int(mem / "memory.limit_in_bytes")
    assert client.sh(sid, "echo ok") == "ok\n"
    assert client.sh(other, "echo ok") == "ok\n"
    assert client.sandbox(sid).json()["state"] == "running"


FILL = r"""
import errno, json, os, sys
res = {}
for path in sys.argv[1:]:
    n = 0
    try:
        with open(path, "wb", buffering=0) as f:
            chunk = b"\xa5" * (1 << 20)
            while n < 96:
                f.write(chunk)
                n += 1
        res[path] = "wrote %d MiB" % n
    except OSError as e:
        res[path] = "%s after %d MiB" % (errno.errorcode[e.errno], n)
    try:
        os.unlink(path)
    except OSError:
        pass
print(json.dumps(res))
"""


def test_every_writable_filesystem_is_bounded(client, agent, make_sandbox):
    """96 MiB into each place root can write in a sandbox with disk 16Mi and
    memory 48Mi: the disk (/, /tmp), and the memory-backed /dev, /dev/shm and
    /dev/mqueue tmpfs, whose own size is 64 MiB but whose pages are charged to
    the sandbox's memory. None takes it all; the memory cgroup never went past
    its limit; the sandbox still works afterwards."""
    sid = make_sandbox(disk="16Mi", memory="48Mi")["id"]
    paths = ["/fill", "/tmp/fill", "/dev/fill", "/dev/shm/fill", "/dev/mqueue/fill", "/home/user/fill"]
    r = client.exec(sid, cmd=["python3", "-c", FILL, *paths], user="root", timeout=120, http_timeout=240)
    assert r.exit is not None, r
    if r.exit["oom_killed"]:
        res = {}
    else:
        assert r.exit_code == 0, r
        res = json.loads(r.stdout.strip().splitlines()[-1])
    full = {p: v for p, v in res.items() if v.startswith("wrote")}
    assert not full, f"96 MiB went into: {full} (all: {res})"
    mem = agent.cgroup_dir("memory", sid)
    assert read_int(mem / "memory.max_usage_in_bytes") <= 48 * 1024 * 1024
    wait_for(lambda: client.exec(sid, shell="echo ok").stdout == "ok\n", timeout=30, interval=0.5,
             what="the sandbox usable after the fill")


INODE_BOMB = r"""
import errno, json, os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
n, err = 0, "none"
try:
    while n < int(sys.argv[2]):
        os.close(os.open("%s/%d" % (d, n), os.O_CREAT | os.O_WRONLY, 0o644))
        n += 1
except OSError as e:
    err = errno.errorcode[e.errno]
print(json.dumps({"files": n, "error": err}))
"""


def test_inode_bomb_bounded_by_the_disk(client, agent, make_sandbox):
    """Empty files take no blocks, so only an inode limit (nr_inodes) on the
    disk tmpfs stops them there; without it (the kernel's default, half the
    host's RAM pages) a 16Mi sandbox could hold about as many inodes as its
    memory limit pays for (a KiB or so of kernel memory each, charged to it),
    whatever its disk size. The bomb stops at the disk's inode budget with
    ENOSPC, well before the memory limit would have to do it."""
    sid = make_sandbox(disk="16Mi", memory="256Mi")["id"]
    disk = agent.state_dir / "sandboxes" / sid / "disk"
    st = os.statvfs(disk)
    budget = st.f_files
    assert 0 < budget <= 16 * 1024 * 1024 // 1024, f"the disk tmpfs of a 16Mi sandbox allows {budget} inodes"
    r = client.exec(sid, cmd=["python3", "-c", INODE_BOMB, "/tmp/ib", str(budget * 4)], user="root", timeout=300,
                    http_timeout=400)
    assert r.exit is not None and r.exit_code == 0, r
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["error"] == "ENOSPC" and got["files"] <= budget, got
    # the sandbox can free them and go on
    client.sh(sid, "rm -rf /tmp/ib && echo ok > /tmp/ok", user="root", timeout=120)
    assert client.sh(sid, "cat /tmp/ok") == "ok\n"


def test_files_api_upload_is_charged_to_the_sandbox(client, agent, make_sandbox):
    """The same 48 MiB, written from inside (charged to the sandbox: checked
    first, so the test can tell) and then uploaded through the files API: the
    upload's tmpfs pages are the sandbox's too (the agent copies them from a
    child in the sandbox's memory cgroup), not node memory outside every
    sandbox's limit."""
    sid = make_sandbox(memory="256Mi", disk="256Mi")["id"]
    mem = agent.cgroup_dir("memory", sid) / "memory.usage_in_bytes"
    before = read_int(mem)
    client.sh(sid, "head -c 50331648 /dev/zero > /tmp/inside")
    inside = read_int(mem) - before
    assert inside >= 40 << 20, f"a 48 MiB write from inside grew the sandbox's memory by {inside >> 20} MiB"
    before = read_int(mem)
    r = client.request("PUT", f"/v1/sandboxes/{sid}/files?path=/tmp/uploaded", raw=b"\xa5" * (48 << 20),
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert client.sh(sid, "stat -c %s /tmp/uploaded") == f"{48 << 20}\n"
    uploaded = read_int(mem) - before
    assert uploaded >= 40 << 20, f"a 48 MiB upload grew the sandbox's memory by {uploaded >> 20} MiB"


@pytest.mark.parametrize("where", ["/dev/shm/ib", "/dev/ib", "/dev/mqueue"])
def test_inode_bomb_in_memory_filesystems_bounded_by_memory(client, agent, make_sandbox, where):
    """The memory-backed tmpfs have no inode budget of their own: their inodes
    are kernel memory charged to the sandbox, so the memory limit stops the
    bomb (ENOSPC or an OOM kill), never the host. (The mqueue filesystem
    stops at the ipc namespace's queue count.)"""
    sid = make_sandbox(memory="64Mi")["id"]
    r = client.exec(sid, cmd=["python3", "-c", INODE_BOMB, where, "2000000"], user="root", timeout=300,
                    http_timeout=400)
    assert r.exit is not None, r
    if not r.exit["oom_killed"]:
        assert r.stdout.strip(), r
        got = json.loads(r.stdout.strip().splitlines()[-1])
        assert got["error"] in ("ENOSPC", "ENOMEM", "EMFILE"), got
    mem = agent.cgroup_dir("memory", sid)
    assert read_int(mem / "memory.max_usage_in_bytes") <= 64 * 1024 * 1024
    client.exec(sid, shell=f"find {where} -mindepth 1 -delete", user="root", timeout=120, http_timeout=200)
    wait_for(lambda: client.exec(sid, shell="echo ok").stdout == "ok\n", timeout=30, interval=0.5,
             what="the sandbox usable after the bomb")
