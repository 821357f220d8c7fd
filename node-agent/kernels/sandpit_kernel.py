"""The part of the bash kernel (bash.py) and of the bridge (bridge.py) that is
the same: a driver that forwards the output of a child process it drives.

It connects to the agent's SOCKET, says hello with the token, then serves one
run per request line (docs/code-interpreter.md, "The kernel protocol"). A run's
events are masked (the sandbox's secret values and the run's secret_env) with
sandpit_mask and cut or split to the agent's line limit with sandpit_limit;
the child's stdout and stderr bytes become stdout/stderr events through a
masking Stream and a UTF-8 decoder per stream. A subclass gives run(req).
"""
import codecs
import json
import os
import socket
import sys

import sandpit_limit
import sandpit_mask

STREAMS = ("stdout", "stderr")


class Driver:
    def __init__(self, secret_values):
        self.secret_values = secret_values  # the sandbox's
        self.values = sandpit_mask.Values(secret_values)
        self.maskers = {n: sandpit_mask.Stream(self.values) for n in STREAMS}
        self.decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in STREAMS}
        self.count = 0
        self.sock = None
        self.rfile = None

    def connect(self, path, token):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")
        self.send({"type": "hello", "token": token, "pid": os.getpid(), "cwd": os.getcwd()})

    def send(self, obj):
        """Every string of an event is masked; stdout/stderr text comes
        masked by its Stream already (a value may straddle two reads), whose
        held tail goes out before any other event. An event too big for one
        line is split or cut (sandpit_limit)."""
        if obj.get("type") not in ("stdout", "stderr", "hello"):
            self.flush_streams()
            obj = self.values.mask_obj(obj)
        self.sock.sendall(b"".join(sandpit_limit.lines(obj)))

    def emit(self, name, data, final=False):
        """The child's bytes DATA on stream NAME, as a stdout/stderr event."""
        text = self.maskers[name].feed(self.decoders[name].decode(data, final), final)
        if text:
            self.send({"type": name, "text": text})

    def flush_streams(self):
        for name in STREAMS:
            self.emit(name, b"", final=True)

    def set_secrets(self, extra):
        """Masks the sandbox's values plus a run's own (its secret_env)."""
        self.values = sandpit_mask.Values(self.secret_values + extra)
        for m in self.maskers.values():
            m.values = self.values

    def begin(self, req):
        """A run's start: its number, its secrets masked from now on; returns
        the env to apply (env, then secret_env over it)."""
        self.count += 1
        self.send({"type": "number_of_executions", "execution_count": self.count})
        secret_env = req.get("secret_env") or {}
        self.set_secrets([v for v in secret_env.values() if isinstance(v, str)])
        env = dict(req.get("env") or {})
        env.update(secret_env)
        return env

    def end(self, **fields):
        self.send(dict({"type": "end_of_execution"}, **fields))
        self.set_secrets([])

    def run(self, req):
        raise NotImplementedError

    def serve(self):
        while True:
            line = self.rfile.readline()
            if not line:
                return
            self.run(json.loads(line))


def read_token():
    """The one-time token on stdin; stdin is /dev/null from then on."""
    token = sys.stdin.readline().strip()
    sys.stdin = open(os.devnull)
    return token
