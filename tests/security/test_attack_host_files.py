"""Attacks on host files from inside a sandbox and through the files API.

Each test plants something on the host (a random marker in a host file, in the
agent's state directory, in another sandbox) and then tries every route it can
think of to read or change it: plain paths, /proc/*/root and /proc/*/cwd,
bind-mount parents, the host paths of the state directory and of another
sandbox's root, kernel files in /proc and /sys, device nodes, and the files
API with planted symlinks, hard links, `..` paths and hostile tar archives. The
marker must never come back and the host file must never change. Root in the
sandbox is no privilege (any caller may ask for it), so most routes are tried
as root and as the sandbox user."""

import io
import os
import secrets
import tarfile
import urllib.parse
from pathlib import Path

import pytest

from conftest import REPO, rand_suffix, wait_for

# --------------------------------------------------------------------------- helpers


def url(sid, sub, **q):
    q = {k: v for k, v in q.items() if v is not None}
    return f"/v1/sandboxes/{sid}/{sub}" + ("?" + urllib.parse.urlencode(q) if q else "")


def put_file(client, sid, path, data, **q):
    return client.request("PUT", url(sid, "files", path=path, **q), raw=data,
                          headers={"Content-Type": "application/octet-stream"})


def get_file(client, sid, path, **q):
    return client.get(url(sid, "files", path=path, **q))


def tar(members):
    """members: (name, kind, data-or-linkname); kind is file, dir, symlink or hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                ti.linkname = data
            tf.addfile(ti)
    return buf.getvalue()


def upload(client, sid, path, body, **q):
    return client.request("PUT", url(sid, "archive", path=path, format="tar", **q), raw=body,
                          headers={"Content-Type": "application/octet-stream"})


def run(client, sid, script, user="root", timeout=60):
    r = client.exec(sid, shell=script, user=user, timeout=timeout, http_timeout=timeout + 60)
    assert r.status == 200 and r.exit is not None, r
    return r


@pytest.fixture
def host_marker():
    """Random values in files of the host: /root, /tmp and /var/tmp."""
    made = []
    for d in ("/root", "/tmp", "/var/tmp"):
        p = Path(d) / f"sandpit-sec-{rand_suffix()}"
        val = "HOSTMARK-" + secrets.token_hex(12)
        p.write_text(val)
        made.append((p, val))
    yield made
    for p, _ in made:
        p.unlink(missing_ok=True)


ROUTES = r"""
set +e
P="$1"
for via in "" /proc/1/root /proc/self/root /proc/1/cwd/.. /proc/self/cwd/../../../.. /usr/.. /usr/../.. \
           /.sandpit/.. /.sandpit-kernels/../.. /.sandpit-code/.. /dev/.. /dev/shm/../.. /sys/.. /tmp/../../..; do
  cat "$via$P" 2>/dev/null
done
for p in /proc/[0-9]*; do cat "$p/root$P" "$p/cwd/../../../..$P" 2>/dev/null; done
ln -s / /tmp/r.$$ 2>/dev/null && cat "/tmp/r.$$$P" 2>/dev/null
ln "/.sandpit/init" /tmp/h.$$ 2>/dev/null && echo "HARDLINKED-INIT"
python3 - "$P" <<'EOF' 2>/dev/null
import os, sys
p = sys.argv[1].lstrip("/")
for d in ("/usr", "/.sandpit", "/.sandpit-kernels", "/proc/self", "/dev/shm"):
    try:
        fd = os.open(d, os.O_PATH | os.O_DIRECTORY)
        print(open(os.open("../" * 12 + p, os.O_RDONLY, dir_fd=fd)).read())
    except OSError:
        pass
EOF
exit 0
"""


@pytest.mark.parametrize("user", ["user", "root"])
def test_host_files_by_every_route(client, sandbox, host_marker, user):
    sid = sandbox["id"]
    for path, val in host_marker + [(Path("/etc/shadow"), None)]:
        r = client.exec(sid, cmd=["sh", "-c", ROUTES, "routes", str(path)], user=user, timeout=60)
        assert r.exit is not None and r.exit_code == 0, r
        assert "HARDLINKED-INIT" not in r.stdout, f"root hard-linked the host's init binary into its disk: {r}"
        if val is not None:
            assert val not in r.stdout, f"{path} of the host read as {user}: {r.stdout[-500:]!r}"
        else:
            # the host's shadow as a whole never comes back (the sandbox has its own /etc)
            host = path.read_text().strip()
            assert not host or host not in r.stdout, f"the host's /etc/shadow read as {user}"
        # and nothing was changed
        if val is not None:
            assert path.read_text() == val


def test_bind_mount_parents_are_the_sandbox(client, sandbox):
    """`..` above a bind of a host directory (/usr, the kernels, the init binary's
    directory) is the sandbox's root, not the host directory's parent."""
    sid = sandbox["id"]
    assert os.path.isdir("/proc/1/root/work") or os.path.isdir("/work"), "needs a host / with /work to compare"
    for d in ("/usr/..", "/.sandpit-kernels/..", "/.sandpit/..", "/proc/self/root/usr/..", "/proc/self/cwd/../.."):
        names = set(run(client, sid, f"ls -A {d}").stdout.split())
        assert ".sandpit" in names and "work" not in names, f"{d} in the sandbox lists {sorted(names)}"
    # init's root is not even listable (init is not dumpable)
    assert "work" not in run(client, sid, "ls -A /proc/1/root; exit 0").stdout


def test_no_link_in_proc_names_a_host_path(client, agent, sandbox):
    """Every /proc link root can read (fds, cwd, root, exe of every process) and
    the mount table name sandbox paths only: nothing says where the agent keeps
    its state, so nothing there can be aimed at."""
    sid = sandbox["id"]
    r = run(client, sid, "for l in /proc/[0-9]*/fd/* /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/exe; do "
                         "readlink \"$l\"; done 2>/dev/null; cat /proc/self/mountinfo /proc/1/mountinfo 2>/dev/null; "
                         "exit 0")
    assert str(agent.state_dir) not in r.stdout, r.stdout
    assert sid not in r.stdout.replace(f"/{sid}", ""), r.stdout


def test_agent_state_dir_unreachable(client, agent, make_sandbox):
    """Root in A aims at the agent's state directory by its host path (the
    attacker may know or guess it): its own state, B's state.json and B's disk."""
    a = make_sandbox()["id"]
    b = make_sandbox(env={"B_ONLY": "b-env-" + rand_suffix()})["id"]
    mark = "BMARK-" + secrets.token_hex(8)
    run(client, b, f"echo {mark} > /tmp/bmark && echo {mark} > /home/user/bmark", user="user")
    planted = agent.state_dir / f"sandpit-sec-{rand_suffix()}"
    planted.write_text(mark)
    try:
        st = agent.state_dir
        paths = [planted, st / "sandboxes" / a / "state.json", st / "sandboxes" / b / "state.json",
                 st / "sandboxes" / b / "config.json", st / "sandboxes" / b / "rootfs" / "tmp" / "bmark",
                 st / "sandboxes" / b / "disk" / "upper" / "tmp" / "bmark",
                 f"/.sandpit/../../{b}/rootfs/tmp/bmark", f"/.sandpit/../../../sandboxes/{b}/disk/upper/tmp/bmark"]
        for user in ("root", "user"):
            r = client.exec(a, cmd=["sh", "-c", 'for p in "$@"; do cat "$p"; cat "/proc/1/root$p"; done; '
                                    'ls -R /proc/1/root/../.. | head -c 100000; exit 0', "x", *map(str, paths)],
                            user=user, timeout=60)
            assert r.exit is not None, r
            assert mark not in r.stdout and "B_ONLY" not in r.stdout, f"as {user} in A: {r.stdout[-400:]!r}"
            assert b not in r.stdout, f"A sees B's id as {user}: {r.stdout[-400:]!r}"
        assert planted.read_text() == mark
    finally:
        planted.unlink()


def test_other_sandbox_not_reachable_by_ipc(client, make_sandbox):
    """B's abstract unix socket, System V shared memory and /dev/shm are its own
    (network, ipc namespaces; a /dev/shm tmpfs per sandbox)."""
    a = make_sandbox()["id"]
    b = make_sandbox()["id"]
    name = "sandpit-sec-" + rand_suffix()
    listener = (f"import socket, time\ns = socket.socket(socket.AF_UNIX)\ns.bind('\\0{name}')\ns.listen(1)\n"
                f"open('/dev/shm/{name}', 'w').write('shm-of-b')\nprint('up', flush=True)\ntime.sleep(600)\n")
    r = client.post(f"/v1/sandboxes/{b}/exec", {"cmd": ["python3", "-c", listener], "background": True})
    assert r.status == 201, r
    # B itself reaches its socket; the shm segment exists in B
    probe = (f"import socket\ns = socket.socket(socket.AF_UNIX)\n"
             f"try:\n    s.connect('\\0{name}'); print('connected')\nexcept OSError as e: print('refused', e.errno)\n")

    def b_ready():
        return "connected" in client.exec(b, cmd=["python3", "-c", probe]).stdout

    wait_for(b_ready, timeout=30, interval=0.2, what="B's listener")
    run(client, b, "ipcmk -M 4096 >/dev/null 2>&1 || python3 -c 'import ctypes; "
                   "print(ctypes.CDLL(None).shmget(0x5a5a, 4096, 0o1666))'")
    b_ipcs = run(client, b, "cat /proc/sysvipc/shm").stdout
    assert len(b_ipcs.strip().splitlines()) >= 2, b_ipcs
    for user in ("user", "root"):
        assert "refused" in client.exec(a, cmd=["python3", "-c", probe], user=user).stdout
        assert len(run(client, a, "cat /proc/sysvipc/shm", user=user).stdout.strip().splitlines()) == 1
        assert run(client, a, f"cat /dev/shm/{name}; exit 0", user=user).stdout == ""


def test_every_mount_of_a_host_filesystem_is_read_only(client, sandbox):
    """A bind of a host directory that is writable in the sandbox (or a
    writable submount below a read-only bind: `ro` is not recursive) would be a
    direct write to the host. Every mount whose device is one of the host's
    block-backed filesystems is read-only in the sandbox."""
    sid = sandbox["id"]
    host_devs = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            if post.split()[1].startswith("/dev/"):
                host_devs.add(pre.split()[2])
    assert host_devs, "no block-backed filesystem on the host"
    seen = []
    for line in run(client, sid, "cat /proc/self/mountinfo").stdout.splitlines():
        pre = line.split(" - ", 1)[0].split()
        if pre[2] in host_devs:
            seen.append(pre[4])
            assert "ro" in pre[5].split(","), f"{pre[4]} is a writable mount of the host's {pre[2]}: {line}"
    assert "/usr" in seen, seen


def test_exec_cwd_through_proc_fds(client, sandbox):
    """The "Leaky Vessels" pattern (CVE-2024-21626): a working directory taken
    through a file descriptor that init or runc left open on a host directory.
    No exec starts outside the sandbox's root, whatever cwd it names; one
    through /proc that does name a sandbox directory works."""
    sid = sandbox["id"]
    cwds = ["/proc/self/root/tmp", "/proc/self/cwd"]
    for n in range(16):
        cwds += [f"/proc/self/fd/{n}", f"/proc/1/fd/{n}", f"/proc/1/fd/{n}/..", f"/proc/self/fd/{n}/../.."]
    started = {}
    for cwd in cwds:
        r = client.exec(sid, shell="pwd -P; ls -A ..", cwd=cwd, user="root", timeout=20)
        if r.status != 200:
            assert r.status == 400, (cwd, r)
            continue
        assert r.exit is not None, r
        assert "work" not in r.stdout.split() and "sandpit-it" not in r.stdout, f"cwd {cwd}: {r}"
        started[cwd] = r.stdout.split()[0]
    assert started.get("/proc/self/root/tmp") == "/tmp", started


# --------------------------------------------------------------------------- /proc, /sys, /dev

PROC_SYS_KNOBS = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/vm/drop_caches",
                  "/proc/sys/kernel/hostname", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/fs/binfmt_misc/register",
                  "/proc/sysrq-trigger", "/proc/sys/kernel/randomize_va_space"]


@pytest.mark.parametrize("path", PROC_SYS_KNOBS)
def test_proc_sys_not_writable(client, sandbox, path):
    """core_pattern and modprobe are the classic container escapes: a value
    that names a program the host kernel then runs as root."""
    before = Path(path).read_text() if os.path.isfile(path) and os.access(path, os.R_OK) else None
    value = "|/tmp/evil %p" if path.endswith("core_pattern") else "/tmp/evil" if path.endswith("modprobe") else "1"
    r = run(client, sandbox["id"], f"printf '%s\\n' '{value}' > {path}")
    assert r.exit_code != 0, f"{path} written from the sandbox: {r}"
    assert any(w in r.stderr for w in ("Read-only file system", "No such file", "nonexistent")), r
    if before is not None:
        assert Path(path).read_text() == before


SYS_KNOBS = ["/sys/kernel/mm/transparent_hugepage/enabled", "/sys/fs/cgroup/release_agent",
             "/sys/class/net/lo/mtu", "/sys/kernel/uevent_helper", "/sys/power/state", "/sys/kernel/profiling"]


@pytest.mark.parametrize("path", SYS_KNOBS)
def test_sys_not_writable(client, sandbox, path):
    r = run(client, sandbox["id"], f"echo 1 > {path}")
    assert r.exit_code != 0, f"{path} written from the sandbox: {r}"
    assert any(w in r.stderr for w in ("Read-only file system", "No such file", "nonexistent")), r


# Kernel memory and host-wide internals: root in a sandbox reads nothing from them
# (absent, masked by /dev/null, or refused).
KERNEL_FILES = ["/proc/kcore", "/proc/kmsg", "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup",
                "/proc/slabinfo", "/proc/vmallocinfo", "/proc/timer_list", "/proc/keys", "/proc/sched_debug",
                "/dev/kmsg", "/dev/mem", "/dev/kmem", "/dev/port", "/sys/firmware/acpi/tables/DSDT",
                "/sys/kernel/debug/tracing/trace"]


@pytest.mark.parametrize("path", KERNEL_FILES)
def test_kernel_files_give_nothing(client, sandbox, path):
    r = run(client, sandbox["id"], f"head -c 4096 {path} | wc -c")
    assert r.stdout.strip() == "0", f"root in the sandbox read {r.stdout.strip()} bytes of {path}: {r}"


def test_kernel_files_are_not_empty_on_the_host():
    """The test above is not vacuous: the host has several of them, with content."""
    seen = [p for p in KERNEL_FILES if os.path.isfile(p) and os.access(p, os.R_OK) and not p.endswith("kmsg")]
    full = []
    for p in seen:
        try:
            with open(p, "rb") as f:
                if f.read(64):
                    full.append(p)
        except OSError:
            pass
    assert len(full) >= 4, f"readable with content on the host: {full}"


def test_no_block_devices_and_mknod_refused(client, agent, sandbox):
    sid = sandbox["id"]
    assert run(client, sid, "find /dev -type b | wc -l").stdout.strip() == "0"
    host_dev = os.stat("/").st_dev
    major, minor = os.major(host_dev), os.minor(host_dev)
    for user in ("root", "user"):
        for kind, maj, mnr in (("b", major, minor), ("c", 1, 1), ("c", 1, 11), ("b", 7, 0)):
            r = run(client, sid, f"mknod /tmp/dev-{kind}{maj}-{mnr} {kind} {maj} {mnr}", user=user)
            assert r.exit_code != 0 and "Operation not permitted" in r.stderr, f"mknod {kind} {maj}:{mnr}: {r}"
    # a FIFO needs no privilege and is allowed
    assert run(client, sid, "mknod /tmp/fifo p && stat -c %F /tmp/fifo").stdout.strip() == "fifo"
    # the device cgroup lets no block device be read or written (runc's "b *:* m"
    # allows only the mknod, which CAP_MKNOD refuses anyway), nor any device at all
    devices = (agent.cgroup_dir("devices", sid) / "devices.list").read_text().split()
    entries = [devices[i:i + 3] for i in range(0, len(devices), 3)]
    assert not [e for e in entries if e[0] == "a"], entries
    assert all(set(e[2]) <= {"m"} for e in entries if e[0] == "b"), entries
    assert all(e[1] != "*:*" or set(e[2]) <= {"m"} for e in entries), entries


# --------------------------------------------------------------------------- the files API


@pytest.fixture
def shadow_link(client, sandbox, host_marker):
    """As the sandbox user: symlinks aimed at host files, planted where the
    files API will be pointed at them."""
    sid = sandbox["id"]
    mpath, mval = host_marker[1]  # in /tmp
    run(client, sid, f"ln -s /etc/shadow ~/shadow; ln -s {mpath} ~/marker; ln -s ../../../../../../..{mpath} ~/rel;"
                     f" ln -s /proc/1/root{mpath} ~/procroot; ln -s / ~/root; ln -s /proc/self/fd/1 ~/fd1", user="user")
    return sid, mpath, mval


LINK_PATHS = ["/home/user/shadow", "/home/user/marker", "/home/user/rel", "/home/user/procroot",
              "/home/user/root{m}", "/home/user/root/../../..{m}", "/home/user/fd1"]


@pytest.mark.parametrize("user", ["user", "root"])
def test_files_api_read_through_planted_links(client, shadow_link, user):
    sid, mpath, mval = shadow_link
    shadow = Path("/etc/shadow").read_bytes()
    for p in LINK_PATHS:
        p = p.format(m=mpath)
        r = get_file(client, sid, p, user=user)
        assert mval.encode() not in r.body, f"GET {p} as {user} returned the host marker"
        assert r.status != 200 or shadow not in r.body, f"GET {p} as {user} returned the host's /etc/shadow"
        for fmt in ("tar", "zip"):
            a = client.get(url(sid, "archive", path=p, format=fmt, user=user))
            assert mval.encode() not in a.body and (not shadow.strip() or shadow not in a.body), (p, fmt, a)


@pytest.mark.parametrize("user", ["user", "root"])
def test_files_api_write_through_planted_links(client, shadow_link, user):
    sid, mpath, mval = shadow_link
    shadow = Path("/etc/shadow").read_bytes()
    for p in LINK_PATHS:
        p = p.format(m=mpath)
        put_file(client, sid, p, b"OVERWRITTEN", user=user)
        client.post(url(sid, "fs/rm", user=user), {"path": p})
    assert Path(mpath).read_text() == mval
    assert Path("/etc/shadow").read_bytes() == shadow


SWAPPER = r"""
import ctypes, os
os.makedirs("/tmp/race/a", exist_ok=True)
open("/tmp/race/a/probe", "w").write("sandbox-side")
if not os.path.lexists("/tmp/race/b"):
    os.symlink("/", "/tmp/race/b")
libc = ctypes.CDLL(None, use_errno=True)
open("/tmp/race/ready", "w").close()
while True:  # renameat2(RENAME_EXCHANGE): a and b trade places atomically, forever
    if libc.syscall(316, -100, b"/tmp/race/a", -100, b"/tmp/race/b", 2) != 0:
        raise SystemExit("renameat2: %d" % ctypes.get_errno())
"""


def test_files_api_race_dir_swapped_for_symlink(client, sandbox, host_marker):
    """Root in the sandbox swaps a directory and a symlink to `/` as fast as it
    can while the files API reads and writes through the path: a resolver that
    checked then used would sometimes follow the link to the host."""
    sid = sandbox["id"]
    mpath, mval = host_marker[1]
    r = client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["python3", "-c", SWAPPER], "background": True,
                                                  "user": "root"})
    assert r.status == 201, r
    wait_for(lambda: client.get(url(sid, "fs/exists", path="/tmp/race/ready")).json().get("exists"), timeout=30,
             what="the swapper running")
    statuses = {}
    for i in range(200):
        for p in (f"/tmp/race/a{mpath}", f"/tmp/race/b{mpath}", f"/tmp/race/a/../../..{mpath}"):
            g = get_file(client, sid, p, user="root")
            assert mval.encode() not in g.body, f"GET {p} read the host's {mpath} (try {i})"
            statuses[g.status] = statuses.get(g.status, 0) + 1
        put_file(client, sid, f"/tmp/race/b{mpath}", b"OVERWRITTEN", user="root")
        assert Path(mpath).read_text() == mval, f"PUT through the swapped link changed the host's {mpath}"
    # the race was real: the swapper still runs, and the files API saw `a` both
    # as the directory (the probe) and as the link to / (no probe there)
    assert "python3 -c" in client.sh(sid, "ps -eo args", user="root")
    seen = {}
    for _ in range(200):
        st = get_file(client, sid, "/tmp/race/a/probe", user="root").status
        seen[st] = seen.get(st, 0) + 1
    assert set(seen) == {200, 404}, (seen, statuses)


TRAVERSALS = ["../../../../../../{m}", "/../../../../{m}", "/home/user/../../..{m}", "/tmp/./../..{m}",
              "//..//..//{m}", "/proc/1/root{m}", "/proc/self/root{m}", "/proc/self/cwd/../../..{m}",
              "/.sandpit/../..{m}", "{m}/."]


@pytest.mark.parametrize("raw", [False, True], ids=["encoded", "raw"])
def test_files_api_path_traversal(client, sandbox, host_marker, raw):
    """`..` in the path (encoded by the client, or sent raw and percent-encoded
    by hand: %2e%2e%2f) never leaves the sandbox's root."""
    sid = sandbox["id"]

    def path_q(p):
        return p.replace(".", "%2e").replace("/", "%2f") if raw else urllib.parse.quote(p, safe="")

    for mpath, mval in host_marker:
        for t in TRAVERSALS:  # nothing is at these paths in the sandbox yet
            p = t.format(m=mpath)
            r = client.get(f"/v1/sandboxes/{sid}/files?path={path_q(p)}&user=root")
            assert mval.encode() not in r.body, f"GET {p!r} read the host's {mpath}"
            assert r.status in (400, 403, 404), (p, r)
        for t in TRAVERSALS:
            p = t.format(m=mpath)
            w = client.request("PUT", f"/v1/sandboxes/{sid}/files?path={path_q(p)}&user=root", raw=b"OVERWRITTEN",
                               headers={"Content-Type": "application/octet-stream"})
            assert Path(mpath).read_text() == mval, f"PUT {p!r} ({w.status}) changed the host's {mpath}"


def test_files_api_nul_and_odd_bytes(client, sandbox, host_marker):
    sid = sandbox["id"]
    mpath, mval = host_marker[1]
    for q in (f"{mpath}%00.txt", f"/tmp%00{mpath}", f"%2e%2e%00%2f{mpath}", "%ff%fe", "/tmp/%0a%0d"):
        r = client.get(f"/v1/sandboxes/{sid}/files?path={q}&user=root")
        assert mval.encode() not in r.body and r.status in (400, 404), (q, r)


def test_hardlink_to_a_bound_host_file_refused(client, agent, sandbox):
    """A hard link in the sandbox's disk to a host file visible through a bind
    (the init binary, /usr) would let the files API, which writes the disk from
    the host, overwrite the host file. The kernel refuses links across mounts."""
    sid = sandbox["id"]
    kernels = REPO / "build" / "share" / "sandpit" / "kernels"
    for src in ("/.sandpit/init", "/usr/bin/id", "/.sandpit-kernels/" + sorted(os.listdir(kernels))[0]):
        r = run(client, sid, f"ln {src} /tmp/hl && echo LINKED")
        assert "LINKED" not in r.stdout, f"{src} hard-linked into the sandbox's disk: {r}"
        assert "Invalid cross-device link" in r.stderr or "Operation not permitted" in r.stderr, r


# --------------------------------------------------------------------------- archive uploads

def escape_archives(mpath):
    d = os.path.dirname(mpath)
    tag = rand_suffix()
    evil = f"sandpit-sec-evil-{tag}"
    return tag, evil, {
        "dotdot": [("ok", "file", b"ok"), (f"../../../../../../..{d}/{evil}", "file", b"evil")],
        "dotdot-inside": [(f"a/b/../../../../../../../..{d}/{evil}", "file", b"evil")],
        "absolute": [(f"{d}/{evil}", "file", b"evil")],
        "symlink-then-file": [("out", "symlink", d), (f"out/{evil}", "file", b"evil")],
        "symlink-relative-then-file": [("out", "symlink", "../../../../../../.." + d),
                                       (f"out/{evil}", "file", b"evil")],
        "symlink-chain": [("l1", "symlink", "l2"), ("l2", "symlink", "../../../../../.."),
                          (f"l1{d}/{evil}", "file", b"evil")],
        "symlink-then-dir": [("out", "symlink", "/"), (f"out{d}/{evil}", "dir", None)],
        "symlink-to-proc-root": [("out", "symlink", "/proc/1/root"), (f"out{d}/{evil}", "file", b"evil")],
        "hardlink-then-write": [("h", "hardlink", mpath), ("h", "file", b"OVERWRITTEN")],
        "hardlink-dotdot-then-write": [("h", "hardlink", "../../../../../.." + mpath), ("h", "file", b"OVERWRITTEN")],
        "symlink-onto-file": [("s", "symlink", mpath), ("s", "file", b"OVERWRITTEN")],
        "shadow-symlink": [("s", "symlink", "/etc/shadow"), ("s", "file", b"root::0:0:::::\n")],
    }


CASES = sorted(escape_archives("/tmp/x")[2])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("user", ["user", "root"])
def test_archive_upload_cannot_escape(client, agent, sandbox, host_marker, case, user):
    sid = sandbox["id"]
    mpath, mval = str(host_marker[1][0]), host_marker[1][1]
    tag, evil, cases = escape_archives(mpath)
    shadow = Path("/etc/shadow").read_bytes()
    target = f"/home/user/up-{tag}"
    r = upload(client, sid, target, tar(cases[case]), user=user)
    assert r.status in (200, 400, 403, 404), r
    d = os.path.dirname(mpath)
    assert not os.path.lexists(f"{d}/{evil}"), f"{case}: the archive created {d}/{evil} on the host"
    assert Path(mpath).read_text() == mval, f"{case}: the host's {mpath} was changed"
    assert Path("/etc/shadow").read_bytes() == shadow, f"{case}: the host's /etc/shadow was changed"
    # a link the archive left is read back as the sandbox's, never the host's file
    for name, kind, _ in cases[case]:
        if kind in ("symlink", "hardlink"):
            g = get_file(client, sid, f"{target}/{name}", user=user)
            assert mval.encode() not in g.body, f"{case}: GET {name} gave the host's {mpath}"
            assert g.status != 200 or not shadow.strip() or shadow not in g.body, f"{case}: the host's shadow"
    # whatever landed is below the target in the sandbox, and holds no host content
    listing = client.get(url(sid, "archive", path=target, format="tar", user="root"))
    if listing.status == 200:
        with tarfile.open(fileobj=io.BytesIO(listing.body)) as tf:
            for m in tf.getmembers():
                assert not m.name.startswith("/") and ".." not in m.name.split("/"), m.name
                if m.isfile():
                    assert mval.encode() not in tf.extractfile(m).read(), f"{case}: host content in {m.name}"
    assert client.sandbox(sid).json()["state"] == "running"
