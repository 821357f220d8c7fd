"""Isolation: filesystem, pid/uts/net namespaces, capabilities, /proc."""

import os
import secrets

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


MASKED = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"]


@pytest.mark.parametrize("path", MASKED)
def test_proc_paths_masked(client, sandbox, path):
    """/proc/kcore and friends are masked (bound over by /dev/null): nothing is
    readable from them, even as root."""
    r = client.exec(sandbox["id"], shell=f"wc -c < {path}", user="root")
    assert r.exit is not None, r
    assert r.exit_code != 0 or r.stdout.strip() == "0", f"{path} readable in the sandbox: {r}"
    if not os.path.exists(path):
        # this kernel has no such file (e.g. no CONFIG_PROC_KCORE): then it
        # must not appear in the sandbox either
        assert r.exit_code != 0, r
        return
    # it exists on the host: in the sandbox it is the masking /dev/null
    out = client.sh(sandbox["id"], f"stat -c '%s %t:%T %F' {path}", user="root")
    assert out.strip() == "0 1:3 character special file", f"{path} not masked by /dev/null: {out.strip()}"


def test_sys_firmware_masked(client, sandbox):
    r = client.exec(sandbox["id"], shell="ls -A /sys/firmware", user="root")
    assert r.exit is not None, r
    assert r.stdout.strip() == "", f"/sys/firmware visible: {r.stdout}"


def test_proc_sys_read_only(client, sandbox):
    # writes back the current value, so that a failure of this test changes nothing
    r = client.exec(sandbox["id"], shell="v=$(cat /proc/sys/kernel/sysrq) && echo $v > /proc/sys/kernel/sysrq",
                    user="root")
    assert r.exit is not None, r
    assert r.exit_code != 0, f"/proc/sys is writable from the sandbox: {r}"


def test_sys_read_only(client, sandbox):
    r = client.exec(sandbox["id"], shell="touch /sys/sandpit-probe", user="root")
    assert r.exit_code != 0, r
