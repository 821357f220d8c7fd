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
import os
import secrets
import select
import shlex
import signal
import subprocess
import sys
import tempfile

import sandpit_kernel
import sandpit_mask

PRELUDE = "trap '[ -n \"$__sp_in\" ] && return 130' INT\n"


class Kernel(sandpit_kernel.Driver):
    def __init__(self, path, token, secret_values):
        super().__init__(secret_values)
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
        self.connect(path, token)

    def run(self, req):
        env = self.begin(req)
        with open(self.cell, "w") as f:
            f.write(req.get("code", ""))
        pre, post = [], []
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
            self.flush_streams()
            rc = self.bash.wait()
            self.send({"type": "error", "name": "BashExited",
                       "value": "bash exited with status %d; restart the context" % rc,
                       "traceback": ""})
            self.send({"type": "end_of_execution", "exit_code": rc})
            sys.exit(0)
        if code != 0:
            self.send({"type": "error", "name": "ExitCode", "value": str(code), "traceback": ""})
        self.end(exit_code=code)

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


def main():
    token = sandpit_kernel.read_token()
    Kernel(sys.argv[1], token, sandpit_mask.sandbox_values()).serve()


if __name__ == "__main__":
    main()
