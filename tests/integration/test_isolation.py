"""Isolation: filesystem, pid/uts/net namespaces, capabilities, /proc."""

import json
import os
import secrets
from pathlib import Path

import pytest

from conftest import rand_suffix


@pytest.fixture
def host_secrets():
    made = []
    for d in ("/root", "/tmp"):
        p = f"{d}/sandpit-it-secret-{rand_suffix()}"
        val = secrets.token_hex(16)
        with open(p, "w") as f:
            f.write(val)
        made.append((p, val))
    yield made
    for p, _ in made:
        os.unlink(p)


def test_host_files_not_visible(client, sandbox, host_secrets):
    sid = sandbox["id"]
    for path, val in host_secrets:
        for user in ("user", "root"):
            r = client.exec(sid, cmd=["cat", path], user=user)
            assert r.exit is not None, r
            assert r.exit_code != 0, f"{path} readable as {user} in the sandbox: {r}"
            assert val not in r.stdout
    # nor by listing
    names = client.sh(sid, "ls -a /tmp /root", user="root")
    for path, _ in host_secrets:
        assert os.path.basename(path) not in names


def test_host_shadow_not_visible(client, sandbox):
    with open("/etc/shadow") as f:
        host_shadow = f.read()
    r = client.exec(sandbox["id"], cmd=["cat", "/etc/shadow"], user="root")
    assert r.exit is not None, r
    assert r.stdout != host_shadow
    if host_shadow.strip():
        assert host_shadow.splitlines()[0] not in r.stdout


def test_usr_is_read_only(client, sandbox):
    r = client.exec(sandbox["id"], shell="echo x > /usr/sandpit-it-probe", user="root")
    assert r.exit_code != 0, r
    assert not os.path.exists("/usr/sandpit-it-probe")


def test_writes_stay_in_sandbox(client, sandbox, unique):
    client.sh(sandbox["id"], f"echo hi > /tmp/it-{unique} && echo hi > /etc/it-{unique}", user="root")
    assert not os.path.exists(f"/tmp/it-{unique}") and not os.path.exists(f"/etc/it-{unique}")


def test_hostname_is_id(client, sandbox):
    sid = sandbox["id"]
    assert client.sh(sid, "hostname") == sid + "\n"
    assert client.sh(sid, "cat /proc/sys/kernel/hostname") == sid + "\n"


def test_ps_shows_only_own_processes(client, sandbox):
    out = client.sh(sandbox["id"], "ps -eo pid=,args=")
    lines = [ln.strip() for ln in out.strip().splitlines()]
    pids = [int(ln.split()[0]) for ln in lines]
    assert 1 in pids, out
    assert len(lines) <= 5, f"sandbox sees more processes than its own:\n{out}"
    for word in ("sandpit-agent", "pytest", "systemd", "runc"):
        assert word not in out, f"{word} visible from the sandbox:\n{out}"


def test_other_sandbox_invisible(client, make_sandbox):
    a = make_sandbox()["id"]
    b = make_sandbox()["id"]
    r = client.post(f"/v1/sandboxes/{a}/exec", {"cmd": ["sleep", "3131"], "background": True})
    assert r.status == 201, r
    assert "sleep 3131" in client.sh(a, "ps -eo args")
    assert "sleep 3131" not in client.sh(b, "ps -eo args")
    client.sh(a, "echo a-only > /tmp/a-file")
    assert client.exec(b, cmd=["cat", "/tmp/a-file"]).exit_code != 0


def test_only_loopback(client, sandbox):
    sid = sandbox["id"]
    dev = client.sh(sid, "cat /proc/net/dev")
    ifaces = sorted(ln.split(":")[0].strip() for ln in dev.splitlines()[2:] if ":" in ln)
    assert ifaces == ["lo"], f"interfaces in the sandbox: {ifaces}"
    r = client.exec(sid, shell="ip -o link")
    if r.exit_code == 127:
        pytest.skip("no `ip` in the host template (iproute2)")
    names = sorted(ln.split(":")[1].strip().split("@")[0] for ln in r.stdout.splitlines() if ln.strip())
    assert names == ["lo"], r.stdout


def test_user_has_no_capabilities(client, sandbox):
    status = client.sh(sandbox["id"], "cat /proc/self/status")
    fields = dict(ln.split(":\t", 1) for ln in status.splitlines() if ":\t" in ln)
    for k in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(fields[k].strip(), 16) == 0, f"{k} = {fields[k]} for uid 1000"


def test_root_has_no_sys_admin(client, sandbox):
    status = client.sh(sandbox["id"], "cat /proc/self/status", user="root")
    fields = dict(ln.split(":\t", 1) for ln in status.splitlines() if ":\t" in ln)
    eff = int(fields["CapEff"].strip(), 16)
    CAP_SYS_ADMIN, CAP_NET_RAW, CAP_SYS_PTRACE, CAP_SYS_MODULE = 21, 13, 19, 16
    for cap in (CAP_SYS_ADMIN, CAP_NET_RAW, CAP_SYS_PTRACE, CAP_SYS_MODULE):
        assert not eff & (1 << cap), f"root in the sandbox has capability {cap} (CapEff {fields['CapEff']})"


def test_no_new_privs_and_seccomp(client, sandbox):
    status = client.sh(sandbox["id"], "cat /proc/self/status")
    fields = dict(ln.split(":\t", 1) for ln in status.splitlines() if ":\t" in ln)
    assert fields.get("NoNewPrivs", "").strip() == "1", fields.get("NoNewPrivs")
    assert fields.get("Seccomp", "").strip() == "2", fields.get("Seccomp")


@pytest.mark.parametrize("user", ["user", "root"])
def test_namespace_and_mount_attempts_fail(client, sandbox, user):
    sid = sandbox["id"]
    for script in ("unshare -r true", "unshare -m true", "unshare -U true",
                   "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m",
                   "mount -o remount,rw /usr"):
        r = client.exec(sid, shell=script, user=user)
        assert r.exit is not None, r
        assert r.exit_code != 0, f"`{script}` as {user} succeeded in the sandbox: {r}"


# What a sandbox must not see of the host (kernel memory, keys, timers and
# scheduler internals, hardware, firmware): masked, whatever the bundle says.
# These are the paths runc and Docker mask by default.
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
# Kernel settings and triggers: readable, never writable.
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

PROBE = r"""for p in "$@"; do
  if [ -d "$p" ]; then echo "$p dir $(ls -A "$p" | wc -l)"
  elif [ -e "$p" ]; then echo "$p file $(head -c 65536 "$p" 2>/dev/null | wc -c) $(stat -c %t:%T "$p")"
  else echo "$p none"; fi
done"""


def mountinfo(client, sid):
    """{mount point: (per-mount options, fstype)} in the sandbox, the top mount of each."""
    out = {}
    for line in client.sh(sid, "cat /proc/self/mountinfo", user="root").splitlines():
        pre, post = line.split(" - ", 1)
        f = pre.split()
        out[f[4]] = (set(f[5].split(",")), post.split()[0])
    return out


def test_masked_and_readonly_paths_in_effect(client, agent, sandbox):
    """Each path that must be masked shows nothing in the running sandbox, even
    to root (an empty file: the /dev/null bound over it; an empty read-only
    directory); each read-only path is a read-only mount. The same holds for
    every entry of the sandbox's own config.json, so an entry that runc does
    not apply fails too."""
    sid = sandbox["id"]
    config = json.loads((agent.state_dir / "sandboxes" / sid / "config.json").read_text())
    masked = sorted(set(MASKED) | set(config["linux"]["maskedPaths"]))
    readonly = sorted(set(READONLY) | set(config["linux"]["readonlyPaths"]))
    mounts = mountinfo(client, sid)
    r = client.exec(sid, cmd=["sh", "-c", PROBE, "probe", *masked, *readonly], user="root")
    assert r.exit_code == 0, r
    seen = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()}
    checked = 0
    for path in masked:
        kind = seen[path]
        if kind == ["none"]:
            # /proc is the same kernel's: a path the host has must be there, masked
            assert not os.path.exists(path), f"{path} exists on the host but not in the sandbox"
            continue
        assert path in mounts, f"{path} is not masked (no mount over it) in the sandbox: {kind}"
        if kind[0] == "file":
            assert kind[1:] == ["0", "1:3"], f"{path} is not the masking /dev/null: {kind}"
        else:
            assert kind == ["dir", "0"], f"{path} is a directory with entries in the sandbox: {kind}"
            assert "ro" in mounts[path][0], f"{path} masked by a writable mount: {mounts[path]}"
        checked += 1
    for path in readonly:
        if seen[path] == ["none"]:
            assert not os.path.exists(path), f"{path} exists on the host but not in the sandbox"
            continue
        assert path in mounts and "ro" in mounts[path][0], f"{path} is not a read-only mount: {mounts.get(path)}"
        checked += 1
    # this kernel has most of them: the test looked at real masks
    assert checked >= 8, seen
    # and the host has content behind a mask the sandbox sees empty
    host = [p for p in ("/proc/keys", "/proc/timer_list", "/proc/sched_debug") if os.path.exists(p)]
    assert any(Path(p).read_bytes() for p in host), f"nothing to mask on this host: {host}"


def test_proc_sys_read_only(client, sandbox):
    # writes back the current value, so that a failure of this test changes nothing
    r = client.exec(sandbox["id"], shell="v=$(cat /proc/sys/kernel/sysrq) && echo $v > /proc/sys/kernel/sysrq",
                    user="root")
    assert r.exit is not None, r
    assert r.exit_code != 0, f"/proc/sys is writable from the sandbox: {r}"


def test_sys_read_only(client, sandbox):
    r = client.exec(sandbox["id"], shell="touch /sys/sandpit-probe", user="root")
    assert r.exit_code != 0, r
