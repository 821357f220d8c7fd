"""sandpit kernel bridge: drives an interpreter that cannot speak the agent's
protocol itself (R has no unix sockets; masking and event limits are written
once, in sandpit_mask.py and sandpit_limit.py, not again in R and Java).

Started inside the sandbox by sandpit-init as
    python3 /.sandpit-kernels/bridge.py LANGUAGE SOCKET
with a one-time token on stdin; speaks the JSON-lines protocol of python.py
(docs/code-interpreter.md) on SOCKET. The interpreter (r_kernel.R,
JavaKernel.java) runs as its child with stdin from /dev/null, its stdout and
stderr on two pipes the bridge reads (so output of user code and of its own
children is streamed as written), requests on fd 3 and its events on fd 4:

    bridge -> child, fd 3: {"code": "...", "env": {"K": "V"}}   one line per run
    child -> bridge, fd 4: {"type": "ready"}                    once, when started
                           {"type": "result", "text": ...}      the run's value
                           {"type": "error", "name", "value", "traceback"}
                           {"type": "done"}                     the run is over

Before it forwards an event of fd 4 the bridge drains both output pipes, so
output written before the event never arrives after it. The child applies a
run's env (its secret_env included) and restores it; the bridge masks the
sandbox's and the run's secret values in every event. SIGINT (the agent's
interrupt) reaches the child's process group; the bridge itself ignores it.
"""
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys

import sandpit_kernel
import sandpit_mask

HERE = os.path.dirname(os.path.abspath(__file__))

# The JVM's environment map is read once at its start: --add-opens lets the
# kernel update it for a run's env (JavaKernel.java, Env). `make` compiles
# JavaKernel.class next to the source; without it the JDK compiles the source
# at every start (single-file launch), which takes as long again.
JAVA = ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
        "--add-opens=java.base/java.lang=ALL-UNNAMED", "--add-opens=java.base/java.util=ALL-UNNAMED"]
CHILDREN = {
    "r": ["Rscript", "--vanilla", os.path.join(HERE, "r_kernel.R")],
    "java": JAVA + (["-cp", HERE, "JavaKernel"] if os.path.exists(os.path.join(HERE, "JavaKernel.class"))
                    else [os.path.join(HERE, "JavaKernel.java")]),
}
NAMES = {"r": "R", "java": "Java"}
FORWARDED = ("result", "error")


class ChildGone(Exception):
    pass


class Bridge(sandpit_kernel.Driver):
    def __init__(self, language, path, token, secret_values):
        super().__init__(secret_values)
        argv = CHILDREN[language]
        if shutil.which(argv[0]) is None:  # the agent's start error says it
            sys.exit("this sandbox's template has no %s (%s is not installed)" % (NAMES[language], argv[0]))
        signal.signal(signal.SIGINT, lambda *a: None)  # for the child only (a handler, not SIG_IGN)
        self.child, self.req_w, self.ev_r = self.spawn(argv)
        self.ev_buf = b""
        self.out = {self.child.stdout.fileno(): "stdout", self.child.stderr.fileno(): "stderr"}
        for f in self.out:
            os.set_blocking(f, False)
        self.wait_ready()
        self.connect(path, token)

    @staticmethod
    def spawn(argv):
        req_r, req_w = os.pipe()
        ev_r, ev_w = os.pipe()
        # Out of the way of 3 and 4, which the child gets them as.
        hi = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (req_r, ev_w)]
        os.close(req_r)
        os.close(ev_w)

        def fds():
            os.dup2(hi[0], 3)
            os.dup2(hi[1], 4)

        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, preexec_fn=fds, pass_fds=(3, 4))
        for fd in hi:
            os.close(fd)
        os.set_blocking(ev_r, False)
        return child, os.fdopen(req_w, "wb", buffering=0), ev_r

    def wait_ready(self):
        """Until the child says ready; what it printed while starting is not a
        run's (a compiler's warnings): it goes to the bridge's own stderr."""
        err = b""
        try:
            while True:
                ready, _, _ = select.select([self.ev_r] + list(self.out), [], [])
                for f in ready:
                    if f != self.ev_r:
                        name = self.out.get(f)
                        data = self.read(f)
                        if name == "stderr":
                            err += data
                        continue
                    if any(ev.get("type") == "ready" for ev in self.events()):
                        return
        except ChildGone:
            pass
        sys.stderr.write(err[-4000:].decode("utf-8", "replace"))
        sys.exit(1)

    def read(self, fd):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return b""
        if not data and fd == self.ev_r:
            raise ChildGone()
        if not data:  # the child closed it: no more from there
            del self.out[fd]
        return data

    def events(self):
        """The complete event lines on fd 4 so far."""
        self.ev_buf += self.read(self.ev_r)
        lines = self.ev_buf.split(b"\n")
        self.ev_buf = lines.pop()
        out = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def drain(self):
        for f in list(self.out):
            while f in self.out:
                data = self.read(f)
                if not data:
                    break
                self.emit(self.out[f], data)

    def run(self, req):
        env = self.begin(req)
        code = req.get("code", "")
        line = json.dumps({"code": code if isinstance(code, str) else "", "env": env}) + "\n"
        try:
            self.req_w.write(line.encode())
            self.pump()
        except (ChildGone, BrokenPipeError):
            # The interpreter exited (quit(), System.exit): so does the bridge,
            # with its status, which the agent reports as ContextDied.
            self.drain()
            self.flush_streams()
            rc = self.child.wait()
            sys.exit(rc if rc >= 0 else 128 - rc)
        self.end()

    def pump(self):
        """Forwards output and events until the child's "done"."""
        while True:
            ready, _, _ = select.select([self.ev_r] + list(self.out), [], [])
            for f in ready:
                if f in self.out:
                    data = self.read(f)
                    if data:
                        self.emit(self.out[f], data)
            if self.ev_r not in ready:
                continue
            for ev in self.events():
                self.drain()
                t = ev.get("type")
                if t == "done":
                    return
                if t in FORWARDED:
                    self.send(ev)


def main():
    token = sandpit_kernel.read_token()
    if len(sys.argv) != 3 or sys.argv[1] not in CHILDREN:
        sys.exit("usage: bridge.py r|java SOCKET")
    Bridge(sys.argv[1], sys.argv[2], token, sandpit_mask.sandbox_values()).serve()


if __name__ == "__main__":
    main()
