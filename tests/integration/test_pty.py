"""Processes on a pseudo-terminal: exec with "pty", pty output events, stdin to the
terminal, resize, ^C; and `sandpit exec -it` driven in a local pseudo-terminal."""

import base64
import os
import select
import subprocess
import time

import pytest

from conftest import REPO, Response, assert_error, wait_for

CLI = REPO / "build" / "bin" / "sandpit"


def exec_path(sid):
    return f"/v1/sandboxes/{sid}/exec"


def proc_path(sid, pid, action):
    return f"/v1/sandboxes/{sid}/processes/{pid}/{action}"


class Term:
    """A foreground exec on a pty: its stream, the terminal output so far, and input."""

    def __init__(self, client, sid, body):
        self.client, self.sid = client, sid
        self.s = client.stream("POST", exec_path(sid), body, timeout=60)
        assert not isinstance(self.s, Response), self.s
        start = self.s.next_event()
        assert start["type"] == "start", start
        self.pid = start["pid"]
        self.out = b""
        self.exit = None

    def read_until(self, needle):
        """Reads pty events until needle (bytes) is in the output or the process exits."""
        while needle not in self.out:
            ev = self.s.next_event()
            if ev["type"] == "exit":
                self.exit = ev
                break
            assert ev["type"] == "pty", ev  # nothing comes as stdout/stderr on a pty
            assert set(ev) == {"type", "data_b64"}, ev
            self.out += base64.b64decode(ev["data_b64"])
        assert needle in self.out, (needle, self.out)

    def finish(self):
        for ev in self.s:
            if ev["type"] == "exit":
                self.exit = ev
            else:
                assert ev["type"] == "pty", ev
                self.out += base64.b64decode(ev["data_b64"])
        assert self.exit is not None, self.out
        return self.exit

    def send(self, data):
        r = self.client.post(proc_path(self.sid, self.pid, "stdin"),
                             {"data_b64": base64.b64encode(data).decode()})
        assert r.status == 204, r

    def resize(self, cols, rows):
        return self.client.post(proc_path(self.sid, self.pid, "resize"), {"cols": cols, "rows": rows})

    def close(self):
        self.s.close()


def pty_output(r):
    assert r.status == 200, r
    kinds = {ev["type"] for _, ev in r.events}
    assert kinds == {"start", "pty", "exit"}, r.events
    return b"".join(base64.b64decode(ev["data_b64"]) for _, ev in r.events if ev["type"] == "pty")


def test_tty_and_size(client, sandbox):
    r = client.exec(sandbox["id"], shell="tty; stty size; echo err >&2; exit 5",
                    pty={"cols": 100, "rows": 30})
    out = pty_output(r)
    assert out.startswith(b"/dev/pts/"), out
    assert b"\r\n30 100\r\nerr\r\n" in out, out
    assert r.exit_code == 5


def test_default_template_login_shell(client, make_sandbox):
    """What E2B's pty.create starts, in the `default` rootfs (not the host's binaries)."""
    from conftest import need_default_template
    need_default_template()
    sid = make_sandbox(template="default")["id"]
    t = Term(client, sid, {"cmd": ["/bin/bash", "-i", "-l"], "pty": {"cols": 90, "rows": 20},
                           "env": {"TERM": "xterm-256color"}})
    try:
        # (the login scripts set their own prompt; input typed early waits in the terminal)
        t.send(b"tty; stty size; readlink /dev/ptmx; echo end-$((1+2))\r")
        t.read_until(b"end-3\r\n")
        # the sandbox's first terminal, on its own devpts (runc links /dev/ptmx to it)
        assert b"\r/dev/pts/0\r\n20 90\r\npts/ptmx\r\n" in t.out, t.out
        t.send(b"exit 9\r")
        assert t.finish()["exit_code"] == 9
    finally:
        t.close()


def test_resize(client, sandbox):
    t = Term(client, sandbox["id"], {"shell": "while read l; do echo \"got $l\"; stty size; done",
                                     "pty": {"cols": 80, "rows": 24}})
    try:
        t.send(b"a\n")
        t.read_until(b"got a\r\n24 80\r\n")
        r = t.resize(120, 40)
        assert r.status == 204, r
        t.send(b"b\n")
        t.read_until(b"got b\r\n40 120\r\n")
        t.send(b"\x04")  # ^D: read sees the end of input
        ex = t.finish()
        assert ex["exit_code"] == 0 and ex["signal"] == 0, ex
    finally:
        t.close()


def test_interactive_bash(client, sandbox):
    t = Term(client, sandbox["id"], {"cmd": ["bash", "--norc", "-i"], "pty": {"cols": 80, "rows": 24},
                                     "env": {"PS1": "pty$ "}})
    try:
        t.read_until(b"pty$ ")
        t.send(b"echo hi-$((6*7))\n")
        t.read_until(b"hi-42\r\n")
        t.send(b"exit 3\n")
        ex = t.finish()
        assert ex["exit_code"] == 3, ex
    finally:
        t.close()


def sleeping(client, sid, arg):
    r = client.exec(sid, shell="ps -C sleep -o args= || true")
    return r.exit_code == 0 and f"sleep {arg}" in r.stdout


def test_ctrl_c(client, sandbox):
    sid = sandbox["id"]
    t = Term(client, sid, {"cmd": ["bash", "--norc", "-i"], "pty": {"cols": 80, "rows": 24},
                           "env": {"PS1": "pty$ "}})
    try:
        t.read_until(b"pty$ ")
        t.send(b"sleep 100\n")
        # ^C interrupts what runs in the foreground; sent before sleep runs it would
        # only flush the line, so wait for it.
        wait_for(lambda: sleeping(client, sid, 100), 20, what="sleep 100 running")
        t.send(b"\x03")
        t.send(b"echo rc=$?\n")
        t.read_until(b"rc=130\r\n")  # 128 + SIGINT
        assert not sleeping(client, sid, 100)
        t.send(b"exit 7\n")
        ex = t.finish()
        assert ex["exit_code"] == 7, ex
    finally:
        t.close()

    # A command alone on the terminal is killed by the SIGINT.
    t = Term(client, sid, {"cmd": ["sleep", "101"], "pty": {"cols": 80, "rows": 24}})
    try:
        t.send(b"\x03")
        ex = t.finish()
        assert ex["exit_code"] == -1 and ex["signal"] == 2, ex
    finally:
        t.close()


def test_secret_masked_and_timeout(client, sandbox):
    r = client.exec(sandbox["id"], shell='echo "[$S]"', secret_env={"S": "pty-secret-4711"},
                    pty={"cols": 80, "rows": 24})
    out = pty_output(r)
    assert b"[***]\r\n" in out and b"4711" not in out, out
    r = client.exec(sandbox["id"], cmd=["sleep", "30"], timeout=0.5, pty={"cols": 80, "rows": 24})
    assert r.exit is not None and r.exit["timed_out"] is True, r


def test_background(client, sandbox):
    sid = sandbox["id"]
    r = client.post(exec_path(sid), {"shell": "read l; stty size; echo \"got $l\"", "background": True,
                                     "pty": {"cols": 50, "rows": 10}})
    assert r.status == 201, r
    pid = r.json()["pid"]
    procs = {p["pid"]: p for p in client.processes(sid)}
    assert procs[pid]["pty"] is True and procs[pid]["background"] is True, procs
    assert client.post(proc_path(sid, pid, "resize"), {"cols": 60, "rows": 11}).status == 204
    assert client.post(proc_path(sid, pid, "stdin"), {"data": "x\n"}).status == 204
    res = client.reconnect(sid, pid)
    out = b"".join(base64.b64decode(ev["data_b64"]) for _, ev in res.events if ev["type"] == "pty")
    assert b"11 60\r\ngot x\r\n" in out, res.events
    assert res.exit_code == 0
    # the terminal is gone with the process
    assert_error(client.post(proc_path(sid, pid, "resize"), {"cols": 60, "rows": 11}), 404)


@pytest.mark.parametrize("pty", [{"cols": 0, "rows": 10}, {"cols": 10, "rows": 10000}, {"cols": 80},
                                 {"cols": "80", "rows": 24}, {"cols": 80, "rows": 24, "x": 1}, "80x24",
                                 True])
def test_bad_size(client, sandbox, pty):
    r = client.post(exec_path(sandbox["id"]), {"cmd": ["true"], "pty": pty})
    body = assert_error(r, 400)
    assert "pty must be" in body["message"], body


def test_resize_errors(client, sandbox):
    sid = sandbox["id"]
    t = Term(client, sid, {"cmd": ["cat"], "pty": {"cols": 80, "rows": 24}})
    try:
        for bad in ({"cols": 0, "rows": 5}, {"rows": 5}, {"cols": 5, "rows": 5.5}, {}):
            body = assert_error(client.post(proc_path(sid, t.pid, "resize"), bad), 400)
            assert "must be" in body["message"], body
        assert_error(client.post(proc_path(sid, 999999, "resize"), {"cols": 5, "rows": 5}), 404)
    finally:
        t.close()
    # a process without a terminal
    r = client.post(exec_path(sid), {"cmd": ["sleep", "30"], "background": True})
    assert r.status == 201, r
    pid = r.json()["pid"]
    body = assert_error(client.post(proc_path(sid, pid, "resize"), {"cols": 5, "rows": 5}), 409)
    assert "no pseudo-terminal" in body["message"], body
    assert client.post(proc_path(sid, pid, "signal"), {"signal": "KILL"}).status == 204


# --------------------------------------------------------------------------- CLI


class LocalTerm:
    """The CLI run on a local pseudo-terminal of a given size, as a person's shell would."""

    def __init__(self, argv, cols, rows):
        import fcntl
        import struct
        import termios
        self.fcntl, self.struct, self.termios = fcntl, struct, termios
        self.master, self.slave = os.openpty()
        self.set_size(cols, rows)
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     start_new_session=True, preexec_fn=self._ctty, close_fds=True)
        self.out = b""

    def _ctty(self):
        self.fcntl.ioctl(0, self.termios.TIOCSCTTY, 0)

    def set_size(self, cols, rows):
        # On the master: the kernel sends SIGWINCH to the terminal's foreground group.
        self.fcntl.ioctl(self.master, self.termios.TIOCSWINSZ, self.struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data):
        os.write(self.master, data)

    def read_until(self, needle, timeout=30, since=0):
        deadline = time.monotonic() + timeout
        while needle not in self.out[since:]:
            left = deadline - time.monotonic()
            assert left > 0, (needle, self.out)
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                assert chunk, ("the terminal closed", needle, self.out)
                self.out += chunk

    def wait(self, timeout=60):
        rc = self.proc.wait(timeout)
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.out += chunk
        return rc

    def lflag(self):
        return self.termios.tcgetattr(self.slave)[3]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def cli(agent, *args):
    return [str(CLI), "--server", f"unix://{agent.socket}", *args]


def test_cli_it_bash(agent, sandbox):
    import termios
    t = LocalTerm(cli(agent, "exec", "-it", "-e", "PS1=pty$ ", sandbox["id"], "--", "bash", "--norc"),
                  100, 30)
    try:
        cooked = t.lflag()
        assert cooked & termios.ICANON and cooked & termios.ECHO
        t.read_until(b"pty$ ")
        # raw mode while it runs: what is typed goes through unaltered
        assert not t.lflag() & (termios.ICANON | termios.ECHO | termios.ISIG)
        t.write(b"tty; stty size\r")
        t.read_until(b"30 100\r\n")
        assert b"/dev/pts/" in t.out
        t.set_size(101, 31)  # SIGWINCH to the CLI, which resizes the remote terminal

        def new_size():  # the resize and the typed command travel apart: ask until it shows
            mark = len(t.out)
            t.write(b"stty size\r")
            t.read_until(b"pty$ ", since=mark)
            return b"31 101\r\n" in t.out[mark:]
        wait_for(new_size, 20, interval=0.2, what="the new size in the sandbox")
        t.write(b"sleep 100\r")
        wait_for(lambda: sleeping(agent.client, sandbox["id"], 100), 20, what="sleep 100 running")
        t.write(b"\x03")  # ^C reaches the remote terminal, which interrupts sleep
        t.write(b"echo rc=$?\r")
        t.read_until(b"rc=130\r\n")
        t.write(b"echo hi; exit 3\r")
        assert t.wait() == 3
        assert b"hi\r\n" in t.out
        assert t.lflag() == cooked  # the local terminal is restored
    finally:
        t.close()


def test_cli_it_script(agent, sandbox):
    """`script` gives the CLI a terminal and feeds it what it reads."""
    cmd = " ".join(cli(agent, "exec", "-it", sandbox["id"], "--", "bash", "--norc"))
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], input=b"echo hi-$((40+2)); exit 3\n",
                       capture_output=True, timeout=60)
    assert r.returncode == 3, r
    assert b"hi-42\r\n" in r.stdout, r


def test_cli_t_without_terminal(agent, sandbox):
    r = subprocess.run(cli(agent, "exec", "-it", sandbox["id"], "--", "sh", "-c", "tty; cat; exit 4"),
                       input=b"piped\n", capture_output=True, timeout=60)
    assert r.returncode == 4, r
    assert r.stderr == b"sandpit: Unable to use a TTY - input is not a terminal\n", r
    assert r.stdout == b"not a tty\npiped\n", r
    r = subprocess.run(cli(agent, "exec", "-t", "-d", sandbox["id"], "--", "true"),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert r.returncode == 2 and b"-t and --background" in r.stderr, r


def test_cli_interrupted_restores_terminal(agent, sandbox):
    import signal
    t = LocalTerm(cli(agent, "exec", "-it", sandbox["id"], "--", "sh", "-c", "echo started; sleep 102"),
                  80, 24)
    try:
        cooked = t.lflag()
        t.read_until(b"started")
        wait_for(lambda: sleeping(agent.client, sandbox["id"], 102), 20, what="sleep 102 running")
        t.proc.send_signal(signal.SIGTERM)
        assert t.wait() == 128 + signal.SIGTERM
        assert t.lflag() == cooked
        # the foreground command went with the stream
        wait_for(lambda: not sleeping(agent.client, sandbox["id"], 102), 20, what="sleep 102 gone")
    finally:
        t.close()
