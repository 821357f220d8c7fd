"""sandpit Python kernel: one persistent namespace, driven by the node agent.

Started inside the sandbox by sandpit-init as
    python3 /.sandpit-kernels/python.py SOCKET
with a one-time token on stdin. It connects to the agent's listening SOCKET,
says hello with the token, then serves requests, one JSON line each:
    {"code": "...", "env": {"K": "V"}, "secret_env": {"S": "V"}}
answering with JSON lines (the agent's /code events, docs/code-interpreter.md):
    number_of_executions, stdout, stderr, result, error, end_of_execution.
A kernel pre-started in a warm pool's sandbox gets one more request, before
any run: {"type": "claim", "env": {...}, "secret_env": {...}}, answered with
{"type": "claimed"} (docs/code-interpreter.md, "Warm pools").
Standard library only; numpy/pandas/matplotlib are used when the code uses them.
"""
import ast
import base64
import builtins
import codecs
import importlib.abc
import importlib.util
import io
import json
import linecache
import os
import select
import signal
import socket
import sys
import threading
import traceback

import sandpit_limit
import sandpit_mask

DRIVER = os.path.abspath(__file__)


class Channel:
    """The socket to the agent; sends are whole lines under one lock."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")
        self.lock = threading.Lock()
        self.secrets = sandpit_mask.Values([])

    def send(self, obj):
        """Every string of an event is masked; stdout/stderr text comes
        masked by its Stream already (a value may straddle two writes).
        An event too big for one line is split or cut (sandpit_limit)."""
        if obj.get("type") not in ("stdout", "stderr", "hello"):
            obj = self.secrets.mask_obj(obj)
        data = b"".join(sandpit_limit.lines(obj))
        with self.lock:
            self.sock.sendall(data)

    def recv(self):
        line = self.rfile.readline()
        return json.loads(line) if line else None


class Capture:
    """Makes fd 1 or 2 a pipe whose bytes become stdout/stderr events, so
    output of subprocesses and C code is captured too. A thread forwards
    while a run is active; Kernel.sync() drains what is left at its end."""

    def __init__(self, kernel, fd, name):
        self.kernel = kernel
        self.name = name
        r, w = os.pipe()
        os.dup2(w, fd)
        os.close(w)
        os.set_blocking(r, False)
        self.r = r
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.masker = sandpit_mask.Stream(kernel.chan.secrets)
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            select.select([self.r], [], [])
            with self.kernel.fwd_lock:
                self.pump()

    def pump(self):
        """Forwards what the pipe holds; call with fwd_lock held."""
        while True:
            try:
                data = os.read(self.r, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            if self.kernel.active:
                self.emit(self.masker.feed(self.decoder.decode(data)))

    def emit(self, text):
        if text:
            self.kernel.chan.send({"type": self.name, "text": text})

    def flush(self):
        """Sends what the masker holds back; call with fwd_lock held."""
        self.emit(self.masker.flush())


class PyplotHook(importlib.abc.MetaPathFinder):
    """Patches pyplot.show() when matplotlib.pyplot is first imported, so a
    show() emits the open figures as PNG results (with the Agg backend)."""

    def __init__(self, kernel):
        self.kernel = kernel

    def find_spec(self, name, path, target=None):
        if name != "matplotlib.pyplot":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        orig = spec.loader.exec_module
        kernel = self.kernel

        def exec_module(module):
            orig(module)
            module.show = lambda *a, **k: kernel.flush_figures()

        spec.loader.exec_module = exec_module
        return spec


REPR_METHODS = (
    ("_repr_html_", "html"),
    ("_repr_markdown_", "markdown"),
    ("_repr_svg_", "svg"),
    ("_repr_png_", "png"),
    ("_repr_jpeg_", "jpeg"),
    ("_repr_pdf_", "pdf"),
    ("_repr_latex_", "latex"),
    ("_repr_json_", "json"),
    ("_repr_javascript_", "javascript"),
)


def jsonable(v):
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


class Kernel:
    def __init__(self, chan, secrets):
        self.chan = chan
        self.secrets = secrets  # the sandbox's secret values
        self.count = 0
        self.claimed = False
        self.active = False
        self.in_user = False
        self.fwd_lock = threading.Lock()
        self.ns = {"__name__": "__main__", "__builtins__": builtins}
        self.loop = None
        self.out = Capture(self, 1, "stdout")
        self.err = Capture(self, 2, "stderr")
        # Line-buffered: a print() reaches the pipe as one write at its newline;
        # a partial line goes out at the next flush or at the end of the run.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.stdin = open(os.devnull)
        builtins.display = self.display
        sys.meta_path.insert(0, PyplotHook(self))
        signal.signal(signal.SIGINT, self.on_sigint)

    def on_sigint(self, signum, frame):
        # Only user code is interrupted; the driver's own bookkeeping is not.
        if self.in_user:
            raise KeyboardInterrupt

    def sync(self):
        """Everything printed so far is sent before what follows."""
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        with self.fwd_lock:
            self.out.pump()
            self.err.pump()
            self.out.flush()
            self.err.flush()

    # --- rich output ------------------------------------------------------

    def figure_png(self, fig):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return base64.b64encode(buf.getvalue()).decode()

    def flush_figures(self):
        """Emits every open matplotlib figure as a PNG result and closes it."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        for num in list(plt.get_fignums()):
            fig = plt.figure(num)
            try:
                self.emit_result({"png": self.figure_png(fig), "text": repr(fig)}, False)
            except Exception:
                self.report_error(*sys.exc_info())
            plt.close(fig)

    def bundle(self, obj):
        """The mimebundle of a value: text (repr) plus what its _repr_*_ give."""
        d = {}
        mfig = sys.modules.get("matplotlib.figure")
        if mfig is not None and isinstance(obj, mfig.Figure):
            d["png"] = self.figure_png(obj)
            plt = sys.modules.get("matplotlib.pyplot")
            if plt is not None:
                plt.close(obj)
        elif not isinstance(obj, type):
            for attr, key in REPR_METHODS:
                try:
                    m = getattr(obj, attr, None)
                    if not callable(m):
                        continue
                    v = m()
                except Exception:
                    continue
                if isinstance(v, tuple) and len(v) == 2:
                    v = v[0]
                if v is None:
                    continue
                if key in ("png", "jpeg", "pdf") and isinstance(v, (bytes, bytearray)):
                    v = base64.b64encode(v).decode()
                if key == "json":
                    if isinstance(v, str):
                        try:
                            v = json.loads(v)
                        except ValueError:
                            continue
                    if not jsonable(v):
                        continue
                elif not isinstance(v, str):
                    continue
                d[key] = v
        if "json" not in d and isinstance(obj, (dict, list)) and jsonable(obj):
            d["json"] = obj
        try:
            d["text"] = repr(obj)
        except Exception as e:
            d["text"] = "<repr failed: %s>" % e
        return d

    def emit_result(self, d, main):
        self.sync()
        ev = {"type": "result"}
        ev.update(d)
        ev["is_main_result"] = main
        self.chan.send(ev)

    def display(self, *objs):
        for o in objs:
            self.emit_result(self.bundle(o), False)

    def report_error(self, etype, value, tb):
        # The driver's frames (around the cell, and the SIGINT handler) are not
        # the user's: unlink them.
        while tb is not None and tb.tb_frame.f_code.co_filename == DRIVER:
            tb = tb.tb_next
        cur = tb
        while cur is not None:
            while cur.tb_next is not None and cur.tb_next.tb_frame.f_code.co_filename == DRIVER:
                cur.tb_next = cur.tb_next.tb_next
            cur = cur.tb_next
        text = "".join(traceback.format_exception(etype, value, tb))
        self.sync()
        self.chan.send({"type": "error", "name": etype.__name__, "value": str(value),
                        "traceback": text})

    def set_secrets(self, extra):
        """Masks the sandbox's values plus a run's own (its secret_env)."""
        vals = sandpit_mask.Values(self.secrets + extra)
        with self.fwd_lock:
            self.chan.secrets = self.out.masker.values = self.err.masker.values = vals

    # --- running ----------------------------------------------------------

    def run_code(self, code):
        value = eval(code, self.ns)
        if code.co_flags & 0x80:  # CO_COROUTINE: top-level await
            if self.loop is None:
                import asyncio
                self.loop = asyncio.new_event_loop()
            value = self.loop.run_until_complete(value)
        return value

    def execute(self, source, n):
        filename = "<cell-%d>" % n
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        try:
            tree = compile(source, filename, "exec", ast.PyCF_ONLY_AST | flags)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, filename, "exec", flags)
            tail = compile(last, filename, "eval", flags) if last else None
        except (SyntaxError, ValueError, OverflowError):
            etype, value, _ = sys.exc_info()
            self.report_error(etype, value, None)
            return
        try:
            self.in_user = True
            try:
                self.run_code(body)
                value = self.run_code(tail) if tail else None
            finally:
                self.in_user = False
        except BaseException:
            etype, value, tb = sys.exc_info()
            self.report_error(etype, value, tb.tb_next if tb else None)
            self.flush_figures()
            return
        if value is not None:
            self.ns["_"] = value
            self.emit_result(self.bundle(value), True)
        self.flush_figures()

    def claim(self, req):
        """A kernel pre-started in a sandbox waiting in a warm pool becomes
        the claimed sandbox's: the environment a cold start would have had
        (init's HOME, USER, LOGNAME kept unless given: the user is the same)
        and its secrets, masked from now on. Only before any run, once."""
        if self.count or self.claimed:
            self.chan.send({"type": "refused"})
            return
        self.claimed = True
        env = dict(req.get("env") or {})
        secret_env = req.get("secret_env") or {}
        env.update(secret_env)
        for k in ("HOME", "USER", "LOGNAME"):
            if k not in env and k in os.environ:
                env[k] = os.environ[k]
        for k in list(os.environ):
            if k not in env:
                del os.environ[k]
        for k, v in env.items():
            if os.environ.get(k) != v:
                os.environ[k] = v
        self.secrets = [v for v in secret_env.values() if v]
        self.set_secrets([])
        self.chan.send({"type": "claimed"})

    def serve(self):
        while True:
            req = self.chan.recv()
            if req is None:
                return
            if req.get("type") == "claim":
                self.claim(req)
                continue
            self.count += 1
            self.active = True
            self.chan.send({"type": "number_of_executions", "execution_count": self.count})
            env = req.get("env") or {}
            secret_env = req.get("secret_env") or {}
            saved = {k: os.environ.get(k) for k in list(env) + list(secret_env)}
            os.environ.update(env)
            os.environ.update(secret_env)
            self.set_secrets(list(secret_env.values()))
            try:
                self.execute(req.get("code", ""), self.count)
            except Exception:
                self.report_error(*sys.exc_info())
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            self.sync()
            self.active = False
            self.chan.send({"type": "end_of_execution"})
            self.set_secrets([])


def main():
    sys.path[0] = ""  # like the REPL: the cwd, not this directory
    token = sys.stdin.readline().strip()
    secrets = sandpit_mask.sandbox_values()
    chan = Channel(sys.argv[1])
    kernel = Kernel(chan, secrets)
    kernel.set_secrets([])
    chan.send({"type": "hello", "token": token, "pid": os.getpid(), "cwd": os.getcwd()})
    kernel.serve()


if __name__ == "__main__":
    main()
