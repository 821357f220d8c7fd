"""sandpit bash kernel: one persistent bash process, driven with markers.

Started inside the sandbox by sandpit-init as
    python3 /.sandpit-kernels/bash.py SOCKET
with a one-time token on stdin; speaks the JSON-lines protocol of python.py
(docs/code-interpreter.md). Each run's code is written to a private file and
sourced by the same bash (so cd, variables and functions persist), followed by
a marker line carrying $? on stdout and a marker on stderr: output up to the
markers is the run's. SIGINT (the agent's interrupt) makes the INT trap return
from the sourced file, so the shell survives it. end_of_execution carries the
exit_code; a non-zero one is also an error event, as Jupyter's bash kernel does.
"""
import codecs
import json
import os
import secrets
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile

import sandpit_limit
import sandpit_mask

PRELUDE = "trap '[ -n \"$__sp_in\" ] && return 130' INT\n"


class Kernel:
    def __init__(self, path, token, secret_values):
        self.secret_values = secret_values  # the sandbox's
        self.values = sandpit_mask.Values(secret_values)
        self.maskers = {n: sandpit_mask.Stream(self.values) for n in ("stdout", "stderr")}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")
        self.dir = tempfile.mkdtemp(prefix=".sandpit-bash-")
        self.cell = os.path.join(self.dir, "cell.sh")
        self.marker = ("__sandpit_end_%s__" % secrets.token_hex(12)).encode()
        signal.signal(signal.SIGINT, lambda *a: None)  # for bash and its children only
        self.bash = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for f in (self.bash.stdout, self.bash.stderr):
            os.set_blocking(f.fileno(), False)
        self.bash.stdin.write(PRELUDE.encode())
        self.bash.stdin.flush()
        self.count = 0
        self.decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")}
        self.send({"type": "hello", "token": token, "pid": os.getpid(), "cwd": os.getcwd()})

    def send(self, obj):
        """Every string of an event is masked; stdout/stderr text comes
        masked by its Stream already (a value may straddle two reads).
        An event too big for one line is split or cut (sandpit_limit)."""
        if obj.get("type") not in ("stdout", "stderr", "hello"):
            obj = self.values.mask_obj(obj)
        self.sock.sendall(b"".join(sandpit_limit.lines(obj)))

    def run(self, req):
        self.count += 1
        self.send({"type": "number_of_executions", "execution_count": self.count})
        with open(self.cell, "w") as f:
            f.write(req.get("code", ""))
        secret_env = req.get("secret_env") or {}
        self.set_secrets(list(secret_env.values()))
        pre, post = [], []
        env = dict(req.get("env") or {})
        env.update(secret_env)
        for i, (k, v) in enumerate(env.items()):
            q = shlex.quote(k)
            pre.append('if [ -n "${%s+x}" ]; then __sp_s%d=1; __sp_v%d=${%s}; else __sp_s%d=0; fi; '
                       "export %s=%s" % (k, i, i, k, i, q, shlex.quote(v)))
            post.append('if [ "$__sp_s%d" = 1 ]; then %s=$__sp_v%d; else unset %s; fi; unset __sp_s%d __sp_v%d'
                        % (i, k, i, k, i, i))
        m = self.marker.decode()
        script = "\n".join(pre + [
            "__sp_in=1; . %s < /dev/null; __sp_rc=$?; __sp_in=" % shlex.quote(self.cell)] + post + [
            "printf '%s %%d\\n' \"$__sp_rc\"; printf '%s\\n' >&2" % (m, m), ""])
        try:
            self.bash.stdin.write(script.encode())
            self.bash.stdin.flush()
        except BrokenPipeError:
            pass
        code = self.pump()
        if code is None:
            for name in self.maskers:
                self.emit(name, b"", final=True)
            rc = self.bash.wait()
            self.send({"type": "error", "name": "BashExited",
                       "value": "bash exited with status %d; restart the context" % rc,
                       "traceback": ""})
            self.send({"type": "end_of_execution", "exit_code": rc})
            sys.exit(0)
        if code != 0:
            self.send({"type": "error", "name": "ExitCode", "value": str(code), "traceback": ""})
        self.send({"type": "end_of_execution", "exit_code": code})
        self.set_secrets([])

    def set_secrets(self, extra):
        """Masks the sandbox's values plus a run's own (its secret_env)."""
        self.values = sandpit_mask.Values(self.secret_values + extra)
        for m in self.maskers.values():
            m.values = self.values

    def pump(self):
        """Forwards output until both markers; the exit code, or None when bash died."""
        fds = {self.bash.stdout.fileno(): ["stdout", b"", False],
               self.bash.stderr.fileno(): ["stderr", b"", False]}
        code = None
        while not all(st[2] for st in fds.values()):
            ready, _, _ = select.select([f for f, st in fds.items() if not st[2]], [], [])
            for f in ready:
                st = fds[f]
                try:
                    data = os.read(f, 65536)
                except BlockingIOError:
                    continue
                if not data:
                    return None
                buf = st[1] + data
                i = buf.find(self.marker)
                if i >= 0:
                    rest = buf[i + len(self.marker):]
                    if st[0] == "stdout":
                        nl = rest.find(b"\n")
                        if nl < 0:  # the status is still on its way
                            st[1] = buf
                            continue
                        code = int(rest[:nl].strip() or b"0")
                    self.emit(st[0], buf[:i], final=True)
                    st[1], st[2] = b"", True
                    continue
                # Hold back a tail that may be the start of the marker.
                keep = len(self.marker) - 1
                self.emit(st[0], buf[:-keep] if len(buf) > keep else b"")
                st[1] = buf[-keep:] if len(buf) > keep else buf
        return code

    def emit(self, name, data, final=False):
        text = self.maskers[name].feed(self.decoders[name].decode(data), final)
        if text:
            self.send({"type": name, "text": text})

    def serve(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            self.run(json.loads(line))


def main():
    token = sys.stdin.readline().strip()
    sys.stdin = open(os.devnull)
    Kernel(sys.argv[1], token, sandpit_mask.sandbox_values()).serve()


if __name__ == "__main__":
    main()
