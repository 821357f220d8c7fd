"""Attacks on privilege from inside a sandbox.

Root in a sandbox is not a privilege (any caller may ask for "user": "root"),
so every attack runs as root unless it is about the sandbox user. Each test is
the attack: a capability beyond the documented eight, a syscall the seccomp
profile must refuse, a setuid binary or file capability that would raise the
user to root, a signal, ptrace or /proc/1/mem write against sandpit-init
(PID 1, the agent's trusted peer), init's file descriptors reopened through
/proc/1/fd, and the sandbox's own cgroup limits. The probes are Python
programs run with the sandbox's python3 (the `host` template's is the host's
/usr/bin/python3)."""

import json
import platform
import re
from pathlib import Path

import pytest

from conftest import read_int, wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"

CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}


def py(client, sid, code, user="root", timeout=60):
    """Runs CODE with python3 in the sandbox as USER; returns the JSON its last
    line printed."""
    r = client.exec(sid, cmd=["python3", "-c", code], user=user, timeout=timeout, http_timeout=timeout + 60)
    assert r.status == 200 and r.exit is not None and r.exit_code == 0, r
    return json.loads(r.stdout.strip().splitlines()[-1])


def status_fields(text):
    return {k: v.strip() for k, v in (ln.split(":", 1) for ln in text.splitlines() if ":" in ln)}


def documented_caps():
    """The capabilities the Capabilities table of docs/security.md grants."""
    text = DOCS.read_text()
    section = text.split("## Capabilities", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `CAP_"):
            names.update(re.findall(r"`(CAP_[A-Z_]+)`", line.split("|")[1]))
    assert len(names) >= 8, f"no capability table in {DOCS}: {names}"
    return names


def test_capabilities_are_exactly_the_documented_set(client, sandbox):
    sid = sandbox["id"]
    names = documented_caps()
    mask = sum(1 << CAP_NUMBERS[n] for n in names)
    for who, script, user in (("root exec", "cat /proc/self/status", "root"),
                              ("init", "cat /proc/1/status", "root"),
                              ("user exec", "cat /proc/self/status", "user")):
        f = status_fields(client.sh(sid, script, user=user))
        got = {k: int(f[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        held = sorted(n for n, b in CAP_NUMBERS.items() if got["CapEff"] & (1 << b))
        assert got["CapBnd"] == mask, f"{who}: bounding set {got['CapBnd']:#x} is not the documented {mask:#x}"
        want = mask if user == "root" else 0
        assert got["CapEff"] == want and got["CapPrm"] == want, f"{who} holds {held}, documented {sorted(names)}"
        assert got["CapInh"] == 0 and got["CapAmb"] == 0, f"{who}: {got}"


def test_no_new_privs_and_seccomp_on_every_process(client, sandbox):
    sid = sandbox["id"]
    for who, path, user in (("init", "/proc/1/status", "root"), ("root", "/proc/self/status", "root"),
                            ("user", "/proc/self/status", "user")):
        f = status_fields(client.sh(sid, f"cat {path}", user=user))
        assert f["NoNewPrivs"] == "1", f"{who}: NoNewPrivs {f['NoNewPrivs']}"
        assert f["Seccomp"] == "2", f"{who}: Seccomp {f['Seccomp']} (2 is filter mode)"


# --------------------------------------------------------------------------- seccomp

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x20000, 0x10000000, 0x40000000, 17

# name: (x86_64 number, args, errno wanted). Arguments are chosen so that where the
# kernel itself would answer (no filter), it would answer something else than
# EPERM for most of them (EFAULT, EBADF, ESRCH, a key id, a file descriptor): an
# EPERM is then the filter's.
SYSCALLS = {
    "mount": (165, (0, 0, 0, 0, 0), "EPERM"),
    "umount2": (166, (0, 0), "EPERM"),
    "pivot_root": (155, (0, 0), "EPERM"),
    "unshare(0)": (272, (0,), "EPERM"),
    "unshare(CLONE_NEWUSER)": (272, (CLONE_NEWUSER,), "EPERM"),
    "unshare(CLONE_NEWNS)": (272, (CLONE_NEWNS,), "EPERM"),
    "unshare(CLONE_NEWNET)": (272, (CLONE_NEWNET,), "EPERM"),
    "clone(CLONE_NEWUSER)": (56, (CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), "EPERM"),
    "clone3": (435, (0, 0), "ENOSYS"),
    "setns": (308, (-1, 0), "EPERM"),
    "ptrace(PTRACE_ATTACH, 1)": (101, (16, 1, 0, 0), "EPERM"),
    "ptrace(PTRACE_PEEKDATA, nobody)": (101, (2, 999999, 0, 0), "EPERM"),
    "process_vm_readv(1)": (310, (1, 0, 0, 0, 0, 0), "EPERM"),
    "process_vm_writev(1)": (311, (1, 0, 0, 0, 0, 0), "EPERM"),
    "kexec_load": (246, (0, 0, 0, 0), "EPERM"),
    "kexec_file_load": (320, (-1, -1, 0, 0, 0), "EPERM"),
    "bpf": (321, (0, 0, 0), "EPERM"),
    "keyctl": (250, (0, -3, 0), "EPERM"),
    "add_key": (248, (0, 0, 0, 0, 0), "EPERM"),
    "request_key": (249, (0, 0, 0, 0), "EPERM"),
    "perf_event_open": (298, (0, 0, -1, -1, 0), "EPERM"),
    "open_by_handle_at": (304, (-1, 0, 0), "EPERM"),
    "userfaultfd": (323, (0,), "EPERM"),
    "io_uring_setup": (425, (1, 0), "EPERM"),
    "init_module": (175, (0, 0, 0), "EPERM"),
    "finit_module": (313, (-1, 0, 0), "EPERM"),
    "delete_module": (176, (0, 0), "EPERM"),
    "reboot": (169, (0, 0, 0, 0), "EPERM"),
    "swapon": (167, (0, 0), "EPERM"),
    "syslog": (103, (10, 0, 0), "EPERM"),
    "chroot": (161, (0,), "EPERM"),
    "acct": (163, (0,), "EPERM"),
    "fsopen": (430, (0, 0), "EPERM"),
    "open_tree": (428, (-1, 0, 0), "EPERM"),
    "move_mount": (429, (-1, 0, -1, 0, 0), "EPERM"),
    "mount_setattr": (442, (-1, 0, 0, 0, 0), "EPERM"),
    "pidfd_getfd": (438, (-1, 0, 0), "EPERM"),
    "kcmp": (312, ("self", "self", 0, 0, 0), "EPERM"),
    "settimeofday": (164, (0, 0), "EPERM"),
    "clock_settime": (227, (0, 0), "EPERM"),
    "adjtimex": (159, (0,), "EPERM"),
    "iopl": (172, (3,), "EPERM"),
    "ioperm": (173, (0, 1, 1), "EPERM"),
    "quotactl": (179, (0, 0, 0, 0), "EPERM"),
    "sethostname": (170, (0, 0), "EPERM"),
    "socket(AF_VSOCK)": (41, (40, 1, 0), "EPERM"),
    "personality(READ_IMPLIES_EXEC)": (135, (0x0400000,), "EPERM"),
}

SYSCALL_PROBE = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
for name, (nr, args) in json.loads(sys.argv[1]).items():
    args = [os.getpid() if a == "self" else a for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r == 0 and name.startswith("clone("):
        os._exit(0)  # the child of a clone that should never have happened
    out[name] = errno.errorcode.get(ctypes.get_errno(), "?") if r == -1 else "returned %d" % r
print(json.dumps(out))
"""


def probe_syscalls(client, sid, names, user):
    todo = {n: SYSCALLS[n][:2] for n in names}
    r = client.exec(sid, cmd=["python3", "-c", SYSCALL_PROBE, json.dumps(todo)], user=user, timeout=60)
    assert r.status == 200 and r.exit is not None and r.exit_code == 0, r
    return json.loads(r.stdout.strip().splitlines()[-1])


needs_x86_64 = pytest.mark.skipif(platform.machine() != "x86_64",
                                  reason="the syscall numbers of the probe table are x86_64's")


@needs_x86_64
@pytest.mark.parametrize("name", sorted(SYSCALLS))
def test_seccomp_refuses_as_root(client, sandbox, name):
    got = probe_syscalls(client, sandbox["id"], [name], "root")[name]
    assert got == SYSCALLS[name][2], f"{name} as root in the sandbox: {got}, want {SYSCALLS[name][2]}"


@needs_x86_64
def test_seccomp_refuses_as_user(client, sandbox):
    got = probe_syscalls(client, sandbox["id"], sorted(SYSCALLS), "user")
    wrong = {n: g for n, g in got.items() if g != SYSCALLS[n][2]}
    assert not wrong, f"as the sandbox user: {wrong}"


@needs_x86_64
def test_shocker_open_by_handle_at(client, sandbox):
    """The 'shocker' escape: a file handle for the root of the host filesystem
    that backs a bind mount (here the init binary's), opened with
    open_by_handle_at. name_to_handle_at may work; the open must not."""
    code = r"""
import ctypes, errno, json, os, struct
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(struct.pack("II", 128, 0) + b"\0" * 128)
mnt = ctypes.c_int(0)
r = libc.name_to_handle_at(-100, b"/.sandpit/init", buf, ctypes.byref(mnt), 0)
named = "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
htype = struct.unpack_from("I", buf.raw, 4)[0] if r == 0 else 1
# ext4's handle for inode 2 (the filesystem's root), generation 0
forged = ctypes.create_string_buffer(struct.pack("II", 8, htype) + struct.pack("II", 2, 0))
fd = os.open("/.sandpit/init", os.O_RDONLY)
res = {}
for what, h in (("own", buf), ("forged", forged)):
    ctypes.set_errno(0)
    o = libc.open_by_handle_at(fd, h, os.O_RDONLY)
    res[what] = "opened" if o >= 0 else errno.errorcode[ctypes.get_errno()]
res["named"] = named
print(json.dumps(res))
"""
    got = py(client, sandbox["id"], code)
    assert got["own"] == "EPERM" and got["forged"] == "EPERM", got


# --------------------------------------------------------------------------- setuid, file caps

def test_setuid_root_binary_gives_nothing(client, sandbox):
    """Root makes a setuid-root copy of id(1) on the sandbox's own disk (a mount
    without nosuid); the user runs it and stays uid 1000 (no_new_privs)."""
    sid = sandbox["id"]
    client.sh(sid, "cp /usr/bin/id /tmp/suid-id && chmod 4755 /tmp/suid-id", user="root")
    assert client.sh(sid, "stat -c '%a %u' /tmp/suid-id") == "4755 0\n"
    mounts = client.sh(sid, "grep ' / / ' /proc/self/mountinfo")
    assert "nosuid" not in mounts.split(" - ")[0], "the rootfs is nosuid: this test would prove nothing"
    assert client.sh(sid, "/tmp/suid-id -u; /tmp/suid-id -ru", user="user") == "1000\n1000\n"
    # the host's own setuid binaries (the host template's /usr) neither
    r = client.exec(sid, shell="su -c 'id -u' root </dev/null", user="user", timeout=30)
    assert r.exit is not None and (r.exit_code != 0 or r.stdout.strip() != "0"), r


def test_file_capabilities_cannot_be_set(client, sandbox):
    """A file capability (CAP_SYS_ADMIN in security.capability) would be one way
    around no_new_privs' setuid rule; setting one needs CAP_SETFCAP."""
    code = r"""
import errno, json, os, struct, shutil
shutil.copy("/usr/bin/id", "/tmp/fcap-id")
val = struct.pack("<IIIII", 0x02000001, 1 << 21, 0, 0, 0)
try:
    os.setxattr("/tmp/fcap-id", "security.capability", val)
    print(json.dumps("set"))
except OSError as e:
    print(json.dumps(errno.errorcode[e.errno]))
"""
    assert py(client, sandbox["id"], code) == "EPERM"


# --------------------------------------------------------------------------- sandpit-init (PID 1)

INIT_PROBE = r"""
import errno, json, os, signal
res = {}
def t(name, f):
    try:
        res[name] = "ok: %s" % (f(),)
    except OSError as e:
        res[name] = errno.errorcode.get(e.errno, str(e.errno))
def memwrite():
    with open("/proc/1/mem", "r+b", buffering=0) as f:
        return "opened"
def memread():
    line = [l for l in open("/proc/1/maps").read().splitlines() if " rw-p " in l][0]
    a = int(line.split("-")[0], 16)
    with open("/proc/1/mem", "rb", buffering=0) as f:
        f.seek(a)
        return len(f.read(64))
t("mem_write", memwrite)
t("mem_read", memread)
t("environ", lambda: len(open("/proc/1/environ", "rb").read()))
t("fd1_readlink", lambda: os.readlink("/proc/1/fd/1"))
t("fd1_open", lambda: open("/proc/1/fd/1", "ab").close())
t("cwd", lambda: os.listdir("/proc/1/cwd"))
print(json.dumps(res))
"""


@pytest.mark.parametrize("user", ["user", "root"])
def test_init_memory_and_fds_out_of_reach(client, agent, sandbox, user):
    """/proc/1/mem writable would let the sandbox take over init, the process
    the agent trusts as its peer; /proc/1/fd/1 is the host's init.log, which
    reopened for writing lets root fill the host's disk past the quota, and its
    link names the state directory."""
    got = py(client, sandbox["id"], INIT_PROBE, user=user)
    reached = {k: v for k, v in got.items() if v.startswith("ok")}
    assert not reached, f"as {user} in the sandbox, init's process is open to: {reached}"
    for v in got.values():
        assert str(agent.state_dir) not in v


def test_root_cannot_fill_the_host_disk_through_init_log(client, agent, make_sandbox):
    sid = make_sandbox(disk="16Mi")["id"]
    log = agent.state_dir / "sandboxes" / sid / "init.log"
    before = log.stat().st_size
    r = client.exec(sid, shell="head -c 8388608 /dev/zero >> /proc/1/fd/2", user="root", timeout=60)
    assert r.exit is not None and r.exit_code != 0, r
    assert log.stat().st_size - before < 1024 * 1024, f"init.log grew by {log.stat().st_size - before} bytes"


@pytest.mark.parametrize("sig", ["TERM", "KILL", "STOP", "USR1", "0"])
def test_user_cannot_signal_init(client, sandbox, sig):
    sid = sandbox["id"]
    signo = "0" if sig == "0" else f"signal.SIG{sig}"
    r = client.exec(sid, cmd=["python3", "-c", f"import os, signal; os.kill(1, {signo})"], user="user", timeout=30)
    assert r.exit is not None and r.exit_code != 0, f"kill -{sig} 1 worked as the user: {r}"
    assert "PermissionError" in r.stderr, r
    assert client.sh(sid, "hostname") == f"{sid}\n"


@pytest.mark.parametrize("sig", ["KILL", "STOP"])
def test_root_cannot_kill_or_stop_init(client, sandbox, sig):
    """The kernel drops SIGKILL and SIGSTOP sent to a pid namespace's init from
    inside it: init goes on serving."""
    sid = sandbox["id"]
    client.sh(sid, f"kill -{sig} 1", user="root")
    r = client.exec(sid, shell="hostname", timeout=20, http_timeout=40)
    assert r.status == 200 and r.exit is not None and r.stdout == f"{sid}\n", r
    f = status_fields(client.sh(sid, "cat /proc/1/status", user="root"))
    assert f["State"][0] in "SR", f"init after SIGSTOP: {f['State']}"
    assert client.sandbox(sid).json()["state"] == "running"


def test_root_stopping_init_ends_only_its_sandbox(client, agent, make_sandbox):
    """Root may shut its own sandbox down (SIGTERM to init, which asks it to
    stop): the sandbox is reported exited and deleted cleanly (the leak check),
    and a neighbour is untouched."""
    a = make_sandbox()["id"]
    b = make_sandbox()["id"]
    client.exec(a, shell="kill -TERM 1", user="root", timeout=20, http_timeout=40)
    wait_for(lambda: client.sandbox(a).json()["state"] == "exited", timeout=30, what="A exited")
    assert client.sh(b, "hostname") == f"{b}\n"
    assert client.sandbox(b).json()["state"] == "running"


def test_cannot_shield_itself_from_the_oom_killer(client, sandbox):
    """Lowering oom_score_adj (to -1000: never chosen) needs CAP_SYS_RESOURCE;
    a sandbox that could would make the host's OOM killer take its neighbours
    or the agent instead. Raising it is every process's right."""
    sid = sandbox["id"]
    start = int(client.sh(sid, "cat /proc/self/oom_score_adj", user="root"))
    for user in ("root", "user"):
        r = client.exec(sid, shell="echo -1000 > /proc/self/oom_score_adj; cat /proc/self/oom_score_adj",
                        user=user, timeout=20)
        assert r.exit is not None and r.stdout.split()[-1] == str(start), f"as {user}: {r}"
        assert r.stderr, f"as {user}: the write of -1000 did not fail: {r}"
    up = min(start + 10, 1000)
    assert client.sh(sid, f"echo {up} > /proc/self/oom_score_adj; cat /proc/self/oom_score_adj") == f"{up}\n"


def test_signals_reach_no_host_process(client, agent, make_sandbox):
    """Root in A (CAP_KILL) sends SIGKILL to every process it can (kill -1) and
    to the agent's host pid: only A's own processes die. B's background
    process, B, the agent and A's init live on."""
    a = make_sandbox()["id"]
    b = make_sandbox()["id"]
    r = client.post(f"/v1/sandboxes/{b}/exec", {"cmd": ["sleep", "3172"], "background": True})
    assert r.status == 201, r
    r = client.post(f"/v1/sandboxes/{a}/exec", {"cmd": ["sleep", "3173"], "background": True})
    assert r.status == 201, r
    pid = agent.proc.pid
    inside = client.sh(a, f"test -d /proc/{pid} && echo yes || echo no", user="root").strip()
    r = client.exec(a, shell=f"kill -9 {pid}; echo kill-agent=$?; kill -9 -1; echo unreachable", user="root",
                    timeout=20, http_timeout=40)
    assert r.status == 200, r
    if inside == "no":
        assert "kill-agent=1" in r.stdout or "No such process" in r.stderr, r
    assert agent.alive(), "the agent died"
    assert "sleep 3172" in client.sh(b, "ps -eo args"), "B's process was killed from A"
    assert "sleep 3173" not in client.sh(a, "ps -eo args"), "kill -1 did not even reach A's own processes"
    assert client.sh(a, "hostname") == f"{a}\n"
    assert client.sandbox(a).json()["state"] == "running"


# --------------------------------------------------------------------------- cgroups

def test_cannot_change_own_cgroup_limits(client, agent, make_sandbox):
    sid = make_sandbox(memory="64Mi", pids=64)["id"]
    mem = agent.cgroup_dir("memory", sid) / "memory.limit_in_bytes"
    pids = agent.cgroup_dir("pids", sid) / "pids.max"
    assert read_int(mem) == 64 * 1024 * 1024 and pids.read_text().strip() == "64"
    attempts = [
        "mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg",
        "mkdir -p /tmp/cg2 && mount -t cgroup2 none /tmp/cg2",
        "echo max > /sys/fs/cgroup/pids.max",
        "echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes",
        "mkdir /sys/fs/cgroup/escape",
        "mount -o remount,rw /sys",
        "mount -t sysfs sysfs /tmp/cg",
    ]
    for script in attempts:
        r = client.exec(sid, shell=script, user="root", timeout=30)
        assert r.exit is not None and r.exit_code != 0, f"{script!r} worked as root: {r}"
    assert client.sh(sid, "ls -A /sys/fs/cgroup | wc -l", user="root") == "0\n"
    assert client.sh(sid, "cat /proc/self/cgroup | cut -d: -f3 | sort -u") == "/\n"
    assert read_int(mem) == 64 * 1024 * 1024 and pids.read_text().strip() == "64"
    # a process started after the attempts is still in the sandbox's cgroups
    r = client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sleep", "3171"], "background": True})
    assert r.status == 201, r
    procs = (agent.cgroup_dir("pids", sid) / "cgroup.procs").read_text().split()
    sleeps = [p for p in procs if Path(f"/proc/{p}/cmdline").read_bytes() == b"sleep\x003171\x00"]
    assert len(sleeps) == 1, procs
    cg = Path(f"/proc/{sleeps[0]}/cgroup").read_text()
    assert f"/{sid}\n" in cg and ":memory:" in cg, cg
