"""Issue 16, holes 1 and 2 under gVisor (runtime "runsc").

Debian's runsc has no `run --preserve-fds`, so a runsc sandbox's init is not
handed a listening socket at /.sandpit/init.sock: its stdin is one end of a
socket pair the agent holds (the channel), and every conversation is a new
socket pair sent over it (docs/init-protocol.md#channel). Nothing is looked up
by path. A restarted agent gets a new channel through `sandpit-init
--rechannel` on the abstract socket @sandpit-init-rechannel, proven by a key
kept in the sandbox's dir on the host.

Each test is an attack by root in runsc sandbox A: redirect the agent to
sandbox B's init or to a host socket (hole 1 and 2), take the channel over
with a fake rechannel, or read what would let it do so."""

import os
import socket

import pytest

from test_init_socket import (SECRET, assert_b_untouched, assert_in_a_or_refused, as_root, ctl_dir, host_listener,
                              probe, upper)

__all__ = ["host_listener"]  # a fixture, used by name

RUNSC = "/usr/bin/runsc"


@pytest.fixture
def runsc_two(client, make_sandbox):
    """A under runsc; B under runc (the default) with a secret."""
    assert os.access(RUNSC, os.X_OK), "runsc is not installed (mk/deps.sh installs it)"
    a = make_sandbox(runtime="runsc")["id"]
    b = make_sandbox(secret_env={"S": SECRET})["id"]
    assert client.sh(a, "hostname") == f"{a}\n"
    assert client.sh(b, 'echo "$(hostname) ${S:+yes}"') == f"{b} yes\n"
    return a, b


def test_runsc_symlink_to_other_sandbox_from_inside(client, agent, runsc_two):
    a, b = runsc_two
    target = str(ctl_dir(agent, b) / "init.sock")
    r = as_root(client, a, f"ln -sf {target} /.sandpit/init.sock")
    assert r.exit_code != 0 and "Read-only file system" in r.stderr, r
    assert_in_a_or_refused(probe(client, a), a)
    assert_b_untouched(client, agent, b)


def test_runsc_host_side_substitution_is_never_followed(client, agent, runsc_two, host_listener):
    """As if the sandbox could write its control dir after all: a symlink to B's
    socket and one to a host service. The agent does not look there at all."""
    a, b = runsc_two
    link = ctl_dir(agent, a) / "init.sock"
    assert not link.exists(), "a runsc sandbox has no init socket on the host"
    os.symlink(ctl_dir(agent, b) / "init.sock", link)
    try:
        r = probe(client, a)
        assert r.status == 200 and r.exit_code == 0 and r.stdout == f"host={a} secret=\n", r
        assert_b_untouched(client, agent, b)
        os.unlink(link)
        os.symlink(host_listener.path, link)
        r = probe(client, a)
        assert r.status == 200 and r.stdout == f"host={a} secret=\n", r
    finally:
        os.unlink(link)
    host_listener.close()
    assert host_listener.connections == 0, f"the agent connected to a host socket: {host_listener.received!r}"


# Root in A offers init a channel of its own: a socket pair and a key it
# guesses. The real key is in the sandbox's dir on the host, which is not
# mounted: /.sandpit holds only init.
FAKE_RECHANNEL = r"""
import os, socket
mine, theirs = socket.socketpair()
s = socket.socket(socket.AF_UNIX)
s.connect("\0sandpit-init-rechannel")
socket.send_fds(s, [b"\0" * 32], [theirs.fileno()])
s.settimeout(3)
try:
    answer = s.recv(1)
except OSError:
    answer = b""
mine.settimeout(1)
try:
    ready = mine.recv(1)
except OSError:
    ready = b""
print("answer=%r ready=%r control=%s" % (answer, ready, sorted(os.listdir("/.sandpit"))))
"""


def test_runsc_fake_rechannel_is_refused(client, agent, runsc_two):
    a, b = runsc_two
    as_root(client, a, f"cat > /tmp/fake.py <<'EOF'\n{FAKE_RECHANNEL}\nEOF")
    r = as_root(client, a, "python3 /tmp/fake.py")
    assert r.exit_code == 0, r
    assert r.stdout == "answer=b'' ready=b'' control=['init']\n", f"init took a channel from the sandbox: {r}"
    # The helper itself, run by root in A with a stdin of its own: no key, no channel.
    r = as_root(client, a, "printf 'k%032d' 0 | /.sandpit/init --rechannel; echo rc=$?")
    assert r.stdout.strip().endswith("rc=1"), r
    # The agent still reaches A's own init, and B is untouched.
    assert_in_a_or_refused(probe(client, a), a)
    assert client.sh(a, "echo still-mine") == "still-mine\n"
    assert_b_untouched(client, agent, b)
    key = agent.state_dir / "sandboxes" / a / "channel.key"
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_size == 32
    assert not (upper(agent, a) / "channel.key").exists()


def test_runsc_init_holds_the_channel_out_of_reach(client, agent, runsc_two):
    """Init's fds (the channel) cannot be reopened by root in A, its
    environment carries nothing of the channel (gVisor lets root read
    /proc/1/environ whatever init's dumpable flag), and what a process starts
    with is not the channel. Nor is init's memory, where the key is."""
    a, _ = runsc_two
    r = as_root(client, a, "ls /proc/1/fd/ >/dev/null 2>&1 && echo fds-listed || echo fds-hidden;"
                           " tr '\\0' '\\n' < /proc/1/environ | cut -d= -f1 | sort | tr '\\n' ' '; echo;"
                           " python3 -c 'import os,socket; socket.socket(fileno=os.dup(0))' 2>&1 | tail -1;"
                           " python3 -c 'f=open(\"/proc/1/mem\",\"rb\"); f.seek(0x400000); f.read(1)' 2>&1 | tail -1")
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "fds-hidden", r
    assert lines[1].split() == ["HOME", "PATH"], r
    assert "Socket operation on non-socket" in lines[2], r
    # init's memory (the key to a new channel) is out of reach too
    assert "Permission denied" in lines[3], r


def test_runsc_host_sockets_outside_its_mounts_are_out_of_reach(client, agent, runsc_two, host_listener):
    """runsc runs with --host-uds=open (the code kernels connect to the agent's
    sockets in their mount): gVisor resolves a path in the sandbox's own
    mounts, so a host service's socket elsewhere stays unreachable, by its path
    or by a symlink root in A makes to it."""
    a, _ = runsc_two
    script = (f"ln -sf {host_listener.path} /tmp/link.sock; "
              "for p in " + host_listener.path + " /tmp/link.sock /proc/1/root" + host_listener.path + "; do "
              "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
              "s.sendall(b\"from-a\"); print(\"connected\")' $p 2>/dev/null || echo refused; done")
    r = as_root(client, a, script)
    assert r.stdout == "refused\nrefused\nrefused\n", r
    host_listener.close()
    assert host_listener.connections == 0 and host_listener.received == b"", host_listener.received
