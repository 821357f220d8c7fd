"""Issue 16, holes 1 and 2: the agent's connection to a sandbox's init.

Each test is the attack. Root in sandbox A (an exec with "user": "root", which
any caller may ask for) tries to redirect the agent's next exec to A: to
sandbox B's init (hole 1: B's secret read, a file planted in B), to a unix
socket of the host (hole 2: the agent as a confused deputy), or to a server of
its own that pretends to be init. The agent must refuse or reach A's real init;
nothing may reach B or the host socket.

The host_* tests make the same substitutions from the host side, as if the
sandbox could write its control directory after all: they prove the agent's own
checks (no symlink is followed, the peer must be the init pid it recorded), not
only the read-only mount."""

import os
import signal
import socket
import tempfile
import threading
from pathlib import Path

import pytest

SECRET = "s3cr3t-of-b-7f1c"
TOKEN = "exec-token-of-a-93d2"


def ctl_dir(agent, sid):
    """The control dir on the host: on the sandbox's disk tmpfs (rootfs.h)."""
    return agent.state_dir / "sandboxes" / sid / "disk" / "ctl"


def other_ctl_rel(b):
    """B's init socket, relative to another sandbox's control dir."""
    return f"../../../{b}/disk/ctl/init.sock"


def upper(agent, sid):
    """The sandbox's writable layer as the host sees it."""
    return agent.state_dir / "sandboxes" / sid / "disk" / "upper"


def as_root(client, sid, script):
    return client.exec(sid, shell=script, user="root", timeout=30, http_timeout=60)


def probe(client, sid):
    """An exec to SID as root that says where it ran and tries to plant a file."""
    return client.exec(sid, user="root", timeout=30, http_timeout=60, secret_env={"T": TOKEN},
                       shell='echo "host=$(hostname) secret=${S:+yes}"; touch /tmp/planted')


def assert_in_a_or_refused(r, a_id):
    """The exec went to A's own init, or was refused with an error."""
    if r.status != 200:
        assert r.status >= 400 and isinstance(r.error, dict) and r.error.get("message"), r
        return
    assert r.exit_code == 0, r
    assert r.stdout == f"host={a_id} secret=\n", f"the exec to {a_id} ran elsewhere: {r}"


def assert_b_untouched(client, agent, b_id):
    assert not (upper(agent, b_id) / "tmp" / "planted").exists(), "a file was planted in B"
    assert client.sh(b_id, "test -e /tmp/planted && echo planted || echo clean", user="root") == "clean\n"


class HostListener:
    """A unix socket on the host (an arbitrary service the agent must never talk
    to): records every connection and the bytes it received."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.received = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            c.settimeout(2)
            try:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    self.received += d
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


@pytest.fixture
def two(client, make_sandbox):
    a = make_sandbox()["id"]
    b = make_sandbox(secret_env={"S": SECRET})["id"]
    # both answer from their own init before the attack
    assert client.sh(a, "hostname") == f"{a}\n"
    assert client.sh(b, 'echo "$(hostname) ${S:+yes}"') == f"{b} yes\n"
    return a, b


@pytest.fixture
def host_listener():
    d = tempfile.mkdtemp(prefix="sandpit-sec-")
    os.chmod(d, 0o755)
    h = HostListener(Path(d) / "service.sock")
    yield h
    h.close()
    os.rmdir(d)


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_symlink_to_other_sandbox(client, agent, two, how):
    a, b = two
    target = other_ctl_rel(b) if how == "relative" else str(ctl_dir(agent, b) / "init.sock")
    as_root(client, a, f"rm -f /.sandpit/init.sock; ln -s {target} /.sandpit/init.sock")
    r = probe(client, a)
    assert_in_a_or_refused(r, a)
    assert_b_untouched(client, agent, b)
    assert client.sh(b, 'echo "$(hostname) ${S:+yes}"') == f"{b} yes\n"


def test_symlink_to_host_socket(client, agent, sandbox, host_listener):
    a = sandbox["id"]
    as_root(client, a, f"rm -f /.sandpit/init.sock; ln -s {host_listener.path} /.sandpit/init.sock")
    r = probe(client, a)
    assert_in_a_or_refused(r, a)
    host_listener.close()
    assert host_listener.connections == 0, f"the agent connected to a host socket: {host_listener.received!r}"
    assert host_listener.received == b""


FAKE_INIT = r"""
import os, socket
p = "/.sandpit/init.sock"
try:
    os.rename(p, "/.sandpit/real.sock")
except OSError:
    pass
try:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.listen(8)
except OSError as e:
    open("/tmp/fake.state", "w").write("failed: %s" % e)
    raise SystemExit(0)
open("/tmp/fake.state", "w").write("listening")
while True:
    c, _ = s.accept()
    d = c.recv(1 << 20)
    with open("/tmp/fake.log", "ab") as f:
        f.write(d or b"(connected)")
    c.close()
"""


def test_fake_init_inside(client, agent, sandbox):
    """Root in A replaces the socket with a server of its own."""
    a = sandbox["id"]
    as_root(client, a, f"cat > /tmp/fake.py <<'EOF'\n{FAKE_INIT}\nEOF")
    r = as_root(client, a, "setsid python3 /tmp/fake.py </dev/null >/dev/null 2>&1 &\n"
                           "for i in $(seq 200); do [ -s /tmp/fake.state ] && break; sleep 0.05; done\n"
                           "cat /tmp/fake.state")
    assert r.status == 200 and r.exit_code == 0, r
    r = probe(client, a)
    assert_in_a_or_refused(r, a)
    log = upper(agent, a) / "tmp" / "fake.log"
    assert not log.exists(), f"the agent talked to the sandbox's fake init: {log.read_bytes()[:200]!r}"
    # A's real init still serves A
    assert client.sh(a, "hostname") == f"{a}\n"


def test_control_dir_read_only(client, agent, sandbox):
    """The substitutions above cannot even be made: /.sandpit is read-only."""
    a = sandbox["id"]
    for script in ("rm -f /.sandpit/init.sock", "ln -sf /tmp /.sandpit/x", "mv /.sandpit/init.sock /tmp/",
                   "mkdir /.sandpit/d", "touch /.sandpit/f"):
        r = as_root(client, a, script)
        assert r.exit_code != 0, f"{script!r} worked as root in the sandbox: {r}"
        assert "Read-only file system" in r.stderr, r
    assert sorted(os.listdir(ctl_dir(agent, a))) == ["init", "init.sock"]
    assert client.sh(a, "hostname") == f"{a}\n"


# ---------------------------------------------------------------- host side


def swap_socket(agent, sid):
    """Moves the real socket aside (as a sandbox able to write its control dir
    would); returns a function that puts it back."""
    ctl = ctl_dir(agent, sid)
    os.rename(ctl / "init.sock", ctl / "real.sock")

    def restore():
        try:
            os.unlink(ctl / "init.sock")
        except FileNotFoundError:
            pass
        os.rename(ctl / "real.sock", ctl / "init.sock")

    return restore


def test_host_symlink_to_other_sandbox_is_not_followed(client, agent, two):
    a, b = two
    restore = swap_socket(agent, a)
    try:
        os.symlink(other_ctl_rel(b), ctl_dir(agent, a) / "init.sock")
        r = probe(client, a)
        assert r.status != 200, f"the agent followed a symlink in A's control dir: {r}"
        assert "refused" in r.error["message"], r
        assert_b_untouched(client, agent, b)
    finally:
        restore()
    assert client.sh(a, "hostname") == f"{a}\n"


def assert_fake_init_refused(client, agent, a):
    """With a host socket that is not A's init listening in A's control dir, an
    exec to A is refused (the agent's own failure: 500, not the caller's) and
    the fake gets no frame; A's own init works again once it is back."""
    restore = swap_socket(agent, a)
    fake = None
    try:
        fake = HostListener(ctl_dir(agent, a) / "init.sock")
        r = probe(client, a)
        assert r.status == 500, f"the agent talked to a fake init, or answered it as a client error: {r}"
        assert "refused" in r.error["message"], r
        fake.close()
        assert fake.received == b"", f"the fake init received {fake.received[:200]!r}"
    finally:
        if fake:
            fake.close()
        restore()
    assert client.sh(a, "hostname") == f"{a}\n"


def test_host_fake_init_is_refused(client, agent, sandbox):
    """A listening socket that is not the sandbox's init (its peer pid is not
    the init pid the agent recorded) gets no frame."""
    assert_fake_init_refused(client, agent, sandbox["id"])


def test_peer_check_after_agent_sigkill(client, agent, sandbox):
    """Re-adoption after a SIGKILL: execs work and the peer check still holds
    (the init pid comes back from the state the agent keeps)."""
    a = sandbox["id"]
    client.sh(a, "echo kept > /tmp/marker")
    assert agent.kill9() == -signal.SIGKILL
    agent.start()
    assert client.sh(a, "cat /tmp/marker; hostname") == f"kept\n{a}\n"
    assert_fake_init_refused(client, agent, a)
