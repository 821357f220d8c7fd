"""Fixtures for the sandpit-agent integration tests.

Everything here is standard library + pytest. The tests drive the real
`build/bin/sandpit-agent` (standalone mode) with real runc, cgroups and tmpfs,
as root, through its HTTP API on a unix socket (and TCP in test_tcp.py).

Main pieces:
  Agent        one agent process with its own state dir, socket and cgroup parent;
               can be SIGKILLed / SIGTERMed and restarted with the same state.
  Client       HTTP/1.1 over the unix socket (or TCP): JSON requests and NDJSON
               streams read incrementally, with arrival times.
  leak check   autouse: after every test, deletes what the test created and
               asserts that nothing of any sandbox is left on the host.
"""

import base64
import glob
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# kubectl and helm: on PATH, or where mk/tools.sh (run by `make test`) puts them.
TOOLS_BIN = Path(os.environ.get("SANDPIT_TOOLS_DIR") or "/var/cache/sandpit/tools") / "bin"


def tool_path(name):
    """The path of kubectl or helm (PATH first), or where mk/tools.sh installs it."""
    return shutil.which(name) or str(TOOLS_BIN / name)
AGENT_BIN = REPO / "build" / "bin" / "sandpit-agent"
INIT_BIN = REPO / "build" / "bin" / "sandpit-init"
TEMPLATES_SH = REPO / "mk" / "templates.sh"
# Where `default` and `code-interpreter` were built (mk/templates.sh); the
# suites link them into their own templates directory. SANDPIT_IT_TEMPLATES_DIR
# points at another build (mk/templates.sh --dir DIR).
DEFAULT_TEMPLATES = Path(os.environ.get("SANDPIT_IT_TEMPLATES_DIR") or "/var/lib/sandpit/templates")
DEFAULT_ROOTFS = DEFAULT_TEMPLATES / "default" / "rootfs"
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Every live Agent, so the leak check and the failure report cover all of them.
AGENTS = []


def rand_suffix(n=8):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


# --------------------------------------------------------------------------- HTTP


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client connection over an AF_UNIX stream socket."""

    def __init__(self, path, timeout=120):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self):
        return self.headers.get("Content-Type", "") or ""

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        b = self.body[:500]
        return f"<Response {self.status} {self.content_type!r} {b!r}>"


class Stream:
    """An NDJSON response read as it arrives.

    Iterating yields event dicts; every event is also appended to .events as
    (monotonic arrival time, event). close() drops the connection (the agent
    then sees the client go away).
    """

    def __init__(self, conn, resp, t0):
        self.conn = conn
        self.resp = resp
        self.status = resp.status
        self.headers = resp.headers
        self.t0 = t0
        self.events = []
        self.closed = False

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self.closed:
                raise StopIteration
            line = self.resp.readline()
            if not line:
                self.close()
                raise StopIteration
            now = time.monotonic()
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line.decode("utf-8"))
            except ValueError as e:
                raise AssertionError(f"stream line is not JSON: {line[:300]!r}") from e
            self.events.append((now, ev))
            return ev

    def next_event(self):
        return next(self)

    def read_all(self):
        for _ in self:
            pass
        return self.events

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.resp.close()
        except Exception:
            pass
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class ExecResult:
    """What one exec (or stream reconnect) produced."""

    def __init__(self, status, error=None, events=None):
        self.status = status
        self.error = error  # JSON body when status != 200
        self.events = events or []  # [(t, ev)]
        self.start = None
        self.exit = None
        out, err = [], []
        for _, ev in self.events:
            t = ev.get("type")
            if t == "start":
                self.start = ev
            elif t == "exit":
                self.exit = ev
            elif t in ("stdout", "stderr"):
                (out if t == "stdout" else err).append(event_bytes(ev))
        self.stdout_bytes = b"".join(out)
        self.stderr_bytes = b"".join(err)

    @property
    def stdout(self):
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self):
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def exit_code(self):
        assert self.exit is not None, f"no exit event (status {self.status}, error {self.error}, events {self.events[-5:]})"
        return self.exit["exit_code"]

    def __repr__(self):
        return (f"<ExecResult status={self.status} error={self.error} exit={self.exit} "
                f"stdout={self.stdout[-800:]!r} stderr={self.stderr[-800:]!r}>")


def event_bytes(ev):
    if "data_b64" in ev:
        return base64.b64decode(ev["data_b64"])
    return ev.get("data", "").encode("utf-8")


class Client:
    """API client. Tracks every sandbox id answered 201 on create so the leak
    check can delete what a test created."""

    def __init__(self, unix_path=None, tcp=None, token=None, timeout=120):
        self.unix_path = unix_path
        self.tcp = tcp  # (host, port)
        self.token = token
        self.timeout = timeout
        self.created = []

    def _conn(self, timeout=None):
        t = timeout or self.timeout
        if self.tcp:
            return http.client.HTTPConnection(self.tcp[0], self.tcp[1], timeout=t)
        return UnixHTTPConnection(self.unix_path, timeout=t)

    def _headers(self, body, headers):
        h = {"Host": "localhost"}
        if body is not None:
            h["Content-Type"] = "application/json"
        if self.token is not None:
            h["Authorization"] = f"Bearer {self.token}"
        if headers:
            h.update(headers)
        return {k: v for k, v in h.items() if v is not None}

    @staticmethod
    def _encode(body, raw):
        if raw is not None:
            return raw if isinstance(raw, bytes) else raw.encode()
        if body is not None:
            return json.dumps(body).encode()
        return None

    def request(self, method, path, body=None, raw=None, headers=None, timeout=None):
        data = self._encode(body, raw)
        conn = self._conn(timeout)
        try:
            conn.request(method, path, body=data, headers=self._headers(data, headers))
            resp = conn.getresponse()
            r = Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        self._track(method, path, r)
        return r

    def _track(self, method, path, r):
        if method == "POST" and path.rstrip("/") == "/v1/sandboxes" and r.status == 201:
            try:
                self.created.append(r.json()["id"])
            except Exception:
                pass

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def stream(self, method, path, body=None, timeout=None):
        """Open a streaming request. Returns a Stream when the answer is 200,
        else a Response (the whole body read)."""
        data = self._encode(body, None)
        conn = self._conn(timeout)
        t0 = time.monotonic()
        conn.request(method, path, body=data, headers=self._headers(data, None))
        resp = conn.getresponse()
        if resp.status != 200:
            r = Response(resp.status, resp.headers, resp.read())
            conn.close()
            return r
        ct = resp.headers.get("Content-Type", "")
        assert ct.startswith("application/x-ndjson"), f"streaming answer has Content-Type {ct!r}"
        return Stream(conn, resp, t0)

    # --- convenience -------------------------------------------------------

    def create(self, **spec):
        spec.setdefault("template", "host")
        r = self.post("/v1/sandboxes", spec)
        assert r.status == 201, f"create {spec} -> {r}"
        return r.json()

    def sandbox(self, sid):
        return self.get(f"/v1/sandboxes/{sid}")

    def list_ids(self, *labels):
        q = "&".join("label=" + lab for lab in labels)
        r = self.get("/v1/sandboxes" + ("?" + q if q else ""))
        assert r.status == 200, r
        return sorted(s["id"] for s in r.json()["sandboxes"])

    def exec(self, sid, cmd=None, shell=None, http_timeout=120, **kw):
        """Run a foreground command; collect everything up to the exit event.
        Keyword arguments are fields of the exec request (timeout is the
        command's timeout); http_timeout bounds the whole HTTP exchange."""
        body = dict(kw)
        if cmd is not None:
            body["cmd"] = cmd
        if shell is not None:
            body["shell"] = shell
        s = self.stream("POST", f"/v1/sandboxes/{sid}/exec", body, timeout=http_timeout)
        if isinstance(s, Response):
            try:
                err = s.json()
            except Exception:
                err = s.body
            return ExecResult(s.status, error=err)
        with s:
            s.read_all()
        return ExecResult(200, events=s.events)

    def sh(self, sid, script, **kw):
        """exec a shell string and require exit 0; returns stdout."""
        r = self.exec(sid, shell=script, **kw)
        assert r.status == 200 and r.exit is not None and r.exit_code == 0, f"{script!r}: {r}"
        return r.stdout

    def reconnect(self, sid, pid, http_timeout=120):
        s = self.stream("GET", f"/v1/sandboxes/{sid}/processes/{pid}/stream", timeout=http_timeout)
        if isinstance(s, Response):
            return ExecResult(s.status, error=s.body)
        with s:
            s.read_all()
        return ExecResult(200, events=s.events)

    def processes(self, sid):
        r = self.get(f"/v1/sandboxes/{sid}/processes")
        assert r.status == 200, r
        return r.json()["processes"]


def assert_error(r, status):
    """An error answer per the doc: the status, a JSON body {code, message}."""
    assert r.status == status, f"expected {status}, got {r}"
    assert r.content_type.startswith("application/json"), f"error Content-Type {r.content_type!r}: {r}"
    body = r.json()
    assert body.get("code") == status, f"error body code: {body}"
    assert isinstance(body.get("message"), str) and body["message"], f"error body message: {body}"
    return body


# --------------------------------------------------------------------------- agent


def _mountinfo():
    """[(mount point, fstype)] from /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            mp = parts[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
            out.append((mp, parts[sep + 1]))
    return out


def cgroup_controller_dirs():
    """Every mounted cgroup hierarchy under /sys/fs/cgroup."""
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink())


def proc_state(pid):
    """The one-letter state of a host process ('Z' for a zombie), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pids_in_cgroup_prefix(prefix, zombies=True):
    """Host pids whose cgroup (any hierarchy) is PREFIX or below it. A zombie
    keeps showing the cgroup it died in (marked "(deleted)" once removed)."""
    found = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        st = proc_state(d[6:])
        if st is None:
            continue  # reaped since the listing (a zombie's parent waited for it)
        if not zombies and st == "Z":
            continue
        for ln in lines:
            path = ln.split(":", 2)[-1]
            if path == prefix or path.startswith(prefix + "/"):
                try:
                    with open(d + "/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
                except OSError:
                    if not os.path.exists(d):
                        break  # gone meanwhile: not a leftover
                    cmd = "?"
                st = proc_state(d[6:])
                if st == "Z":
                    try:
                        with open(d + "/status") as f:
                            ppid = [ln.split()[1] for ln in f if ln.startswith("PPid:")][0]
                    except (OSError, IndexError):
                        ppid = "?"
                    cmd = f"zombie, parent {ppid}"
                found[int(d[6:])] = f"{cmd} (cgroup {path})"
                break
    return found


def find_free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Agent:
    def __init__(self, name, templates_dir, listen=None, token_file=None, netns=None, extra_args=(),
                 net_table="sandpit"):
        self.name = name
        self.root = Path(tempfile.mkdtemp(prefix=f"sandpit-it-{name}-"))
        os.chmod(self.root, 0o755)
        self.state_dir = self.root / "state"
        self.socket = self.root / "agent.sock"
        self.log = self.root / "agent.stderr"
        self.templates_dir = Path(templates_dir)
        self.cgroup_parent = f"sandpit-it-{os.getpid()}" + ("" if name == "main" else f"-{name}")
        self.listen = listen
        self.token_file = token_file
        # Sandbox networking (test_network.py): the agent runs inside the node
        # netns NETNS (nsenter --net only), so its veths, routes and nft table
        # live there and never on the host.
        self.netns = netns
        self.extra_args = list(extra_args)
        self.net_table = net_table
        self.proc = None
        self.client = Client(unix_path=self.socket)
        self.starts = 0

    # --- process -----------------------------------------------------------

    def argv(self):
        a = ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []
        a += [str(AGENT_BIN), "--standalone", "--socket", str(self.socket), "--state-dir", str(self.state_dir),
             "--templates-dir", str(self.templates_dir), "--cgroup-parent", self.cgroup_parent,
             "--init", str(INIT_BIN), "--log-format", "text", "--images-dir", str(self.root / "images")]
        if self.listen:
            a += ["--listen", self.listen, "--token-file", str(self.token_file)]
        # SANDPIT_IT_USERNS=on|off runs every agent with that --userns (the
        # default's suites with it flipped); a test's own --userns comes later and wins.
        if os.environ.get("SANDPIT_IT_USERNS"):
            a += ["--userns", os.environ["SANDPIT_IT_USERNS"]]
        return a + self.extra_args

    def start(self, timeout=30):
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.starts += 1
        with open(self.log, "ab") as logf:
            logf.write(f"\n===== test harness: agent start #{self.starts}: {' '.join(self.argv())}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         cwd=str(REPO), start_new_session=True)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode} during start-up; stderr tail:\n"
                                   + self.log_tail())
            try:
                r = self.client.get("/healthz", timeout=5)
                if r.status == 200:
                    return
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"agent did not answer /healthz within {timeout}s (last: {last}); stderr tail:\n"
                           + self.log_tail())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal_and_wait(self, sig, timeout=20):
        """Send SIG to the agent and wait for it to exit; returns its exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"agent did not exit within {timeout}s of signal {sig}")

    def kill9(self):
        return self.signal_and_wait(signal.SIGKILL)

    def restart(self):
        if self.alive():
            self.kill9()
        self.start()

    def ensure_running(self):
        if not self.alive():
            self.start()

    def log_size(self):
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def log_tail(self, lines=60, since=0):
        try:
            with open(self.log, "rb") as f:
                f.seek(since)
                data = f.read()
        except OSError:
            return "(no agent log)"
        text = data.decode("utf-8", "replace").splitlines()
        return "\n".join(text[-lines:])

    # --- host-side views of sandboxes ------------------------------------------

    def runc(self, *args, check=False):
        return subprocess.run(["runc", "--root", str(self.state_dir / "runc"), *args], capture_output=True,
                              text=True, timeout=60, check=check, stdin=subprocess.DEVNULL)

    def runc_ids(self):
        if not (self.state_dir / "runc").exists():
            return []
        r = self.runc("list", "-q")
        if r.returncode != 0:
            return [f"(runc list failed: {r.stderr.strip()})"]
        return [x for x in r.stdout.split() if x]

    def runc_init_pid(self, sid):
        r = self.runc("state", sid)
        assert r.returncode == 0, f"runc state {sid}: {r.stderr}"
        return json.loads(r.stdout)["pid"]

    def cgroup_dir(self, controller, sid):
        return CGROUP_ROOT / controller / self.cgroup_parent / sid

    def mounts_under_state(self, share=False):
        """Mounts under the state dir; share: also <state>/share, the agent's
        own tmpfs of sandpit-init (mounted while it runs, node-agent/src/share.h)."""
        prefix = str(self.state_dir) + "/"
        own = str(self.state_dir / "share")
        return [mp for mp, _ in _mountinfo() if mp.startswith(prefix) and (share or mp != own)]

    def cgroup_children(self):
        out = []
        for ctl in cgroup_controller_dirs():
            p = ctl / self.cgroup_parent
            if p.is_dir():
                for dirpath, dirnames, _ in os.walk(p):
                    for d in dirnames:
                        out.append(os.path.join(dirpath, d))
        return out

    def sandbox_dirs(self):
        p = self.state_dir / "sandboxes"
        return sorted(os.listdir(p)) if p.is_dir() else []

    def sandbox_procs(self, zombies=True):
        return pids_in_cgroup_prefix("/" + self.cgroup_parent, zombies=zombies)

    def teardown_pending(self):
        """/v1/info's count of deleted sandboxes still being torn down."""
        r = self.client.get("/v1/info", timeout=10)
        assert r.status == 200, r
        return r.json()["teardown_pending"]

    def settle(self, timeout=60):
        """Wait until the agent's background teardowns have ended (a DELETE
        answers once the sandbox is dead; unmounting and removal follow):
        /v1/info teardown_pending == 0. A stopped agent has none (its shutdown
        drained them)."""
        if not self.alive():
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                n = self.teardown_pending()
            except OSError:
                if not self.alive():
                    return
                raise
            if n == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"agent [{self.name}]: {n} teardowns still pending after {timeout}s")
            time.sleep(0.02)

    def leftovers(self, ids=(), zombies=True):
        """Everything of any sandbox still on the host, as readable strings,
        once the agent's background teardowns have ended (settle()): what a
        delete leaves to them is counted, not missed.
        zombies=False ignores processes that are dead but not yet reaped (right
        after a delete, their parent may not have waited for them yet; the leak
        check, which allows a few seconds, counts them)."""
        self.settle()
        left = []
        for m in self.mounts_under_state():
            left.append(f"mount {m}")
        for mp, fstype in _mountinfo():
            for sid in ids:
                if sid in mp and not mp.startswith(str(self.state_dir) + "/"):
                    left.append(f"mount {mp} ({fstype}) names sandbox {sid}")
        for c in self.cgroup_children():
            left.append(f"cgroup {c}")
        for cid in self.runc_ids():
            left.append(f"runc container {cid}")
        runtimes = self.state_dir / "runtimes"  # the roots of runtimes a create named
        for name in sorted(os.listdir(runtimes)) if runtimes.is_dir() else []:
            for cid in sorted(os.listdir(runtimes / name)):
                left.append(f"{name} container {cid}")
        for d in self.sandbox_dirs():
            left.append(f"state entry {self.state_dir / 'sandboxes' / d}")
        for pid, what in sorted(self.sandbox_procs(zombies=zombies).items()):
            left.append(f"process {pid}: {what}")
        for sid in ids:
            for ns in glob.glob(f"/run/netns/*{sid}*"):
                left.append(f"netns {ns}")
        if self.netns:
            left += self.network_leftovers()
        return left

    def in_node(self, *cmd):
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)

    def network_leftovers(self):
        """Sandbox networking: veths, nft chains and map elements, routes to
        sandboxes, address leases (netns bind mounts are mounts, checked above),
        once the background teardowns have ended (settle())."""
        self.settle()
        left = []
        for line in self.in_node("ip", "-o", "link").stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith("spx"):
                left.append(f"veth {name} in netns {self.netns}")
        r = self.in_node("nft", "-j", "list", "table", "ip", self.net_table)
        if r.returncode == 0:
            for o in json.loads(r.stdout)["nftables"]:
                if "chain" in o and o["chain"]["name"].startswith("sbx-"):
                    left.append(f"nft chain {o['chain']['name']}")
                if "set" in o and o["set"]["name"].startswith("sbx-"):
                    left.append(f"nft set {o['set']['name']}")
                if "map" in o and o["map"].get("elem"):
                    left.append(f"nft map {o['map']['name']} elements {o['map']['elem']}")
        for line in self.in_node("ip", "route", "show").stdout.splitlines():
            if "spx" in line:
                left.append(f"route {line} in netns {self.netns}")
        leases = self.state_dir / "network" / "leases.json"
        if leases.exists() and json.loads(leases.read_text() or "{}"):
            left.append(f"leases {leases.read_text()}")
        return left

    # --- forced cleanup (only after a leak, and at the end) ----------------

    def scrub(self):
        """Remove every trace of this agent's sandboxes behind its back."""
        for cid in self.runc_ids():
            if cid.startswith("("):
                continue
            self.runc("kill", cid, "KILL")
            self.runc("delete", "-f", cid)
        for _ in range(3):
            for pid in self.sandbox_procs():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if not self.sandbox_procs():
                break
            time.sleep(0.5)
        for mp in sorted(self.mounts_under_state(share=not self.alive()), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for c in sorted(self.cgroup_children(), key=len, reverse=True):
            try:
                os.rmdir(c)
            except OSError:
                pass
        if self.netns:
            for line in self.in_node("ip", "-o", "link").stdout.splitlines():
                name = line.split(":")[1].strip().split("@")[0]
                if name.startswith("spx"):
                    self.in_node("ip", "link", "del", name)
        sb = self.state_dir / "sandboxes"
        if sb.is_dir() and not self.mounts_under_state():
            for d in os.listdir(sb):
                subprocess.run(["rm", "-rf", "--one-file-system", str(sb / d)], capture_output=True)

    def teardown(self):
        """End of session: delete through the API, SIGTERM, then remove leftovers."""
        if self.alive():
            try:
                r = self.client.get("/v1/sandboxes", timeout=10)
                if r.status == 200:
                    for s in r.json().get("sandboxes", []):
                        self.client.delete(f"/v1/sandboxes/{s['id']}", timeout=30)
            except Exception:
                pass
            try:
                self.signal_and_wait(signal.SIGTERM)
            except AssertionError:
                pass
        self.scrub()
        for ctl in cgroup_controller_dirs():
            p = ctl / self.cgroup_parent
            if p.is_dir():
                for dirpath, _, _ in sorted(os.walk(p), key=lambda t: len(t[0]), reverse=True):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
        if not [mp for mp, _ in _mountinfo() if mp.startswith(str(self.root) + "/")]:
            if os.environ.get("SANDPIT_IT_KEEP"):
                print(f"keeping {self.root}")
            else:
                subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], capture_output=True)
        else:
            print(f"WARNING: mounts remain under {self.root}; not removing it")


# --------------------------------------------------------------------------- fixtures


def build_templates(dest):
    """Build the `host` template into DEST and link `default` and
    `code-interpreter` when they exist."""
    dest.mkdir(parents=True, exist_ok=True)
    if not TEMPLATES_SH.exists():
        raise RuntimeError(f"{TEMPLATES_SH} is missing: cannot build the host template")
    r = subprocess.run(["bash", str(TEMPLATES_SH), "host", "--dir", str(dest)], capture_output=True, text=True,
                       cwd=str(REPO), timeout=300, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"mk/templates.sh host --dir {dest} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    for name in ("default", "code-interpreter"):
        if (DEFAULT_TEMPLATES / name).is_dir() and not (dest / name).exists():
            os.symlink(DEFAULT_TEMPLATES / name, dest / name)


@pytest.fixture(scope="session")
def templates_dir():
    for b in (AGENT_BIN, INIT_BIN):
        if not b.exists():
            pytest.fail(f"{b} does not exist: build it first (make all)", pytrace=False)
    d = Path(tempfile.mkdtemp(prefix="sandpit-it-templates-"))
    os.chmod(d, 0o755)
    try:
        build_templates(d)
    except RuntimeError as e:
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)])
        pytest.fail(str(e), pytrace=False)
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)])


def start_agent(name, templates_dir, cls=None, **kw):
    """An Agent (or a subclass, cls) started and registered for the leak
    check; a start that fails fails the test."""
    a = (cls or Agent)(name, templates_dir, **kw)
    AGENTS.append(a)
    try:
        a.start()
    except RuntimeError as e:
        a.teardown()
        AGENTS.remove(a)
        pytest.fail(str(e), pytrace=False)
    return a


def raw_unix(agent, data, timeout=30):
    """Sends raw bytes to the agent's unix socket; what it answered, until it
    closed. A reset while sending (it may answer before reading it all) or
    while reading ends that side."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(agent.socket))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return out


# --- TLS certificates and the port proxy's peers, for the TLS and gateway tests

def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_ca(d, name, days=2):
    """A CA (EC P-256) in directory d: (d/NAME.pem, d/NAME.key)."""
    openssl("req", "-x509", *EC, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", str(days),
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    return Path(d) / f"{name}.pem", Path(d) / f"{name}.key"


def make_cert(d, ca, name, cn, san=None, days=2):
    """A server certificate for cn (subjectAltName san, else DNS:cn) signed by
    the CA d/CA.pem: (d/NAME.pem, d/NAME.key, mode 0600)."""
    openssl("req", "-new", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    (Path(d) / f"{name}.ext").write_text(f"subjectAltName={san or 'DNS:' + cn}\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", str(days), "-extfile", f"{name}.ext", cwd=d)
    os.chmod(Path(d) / f"{name}.key", 0o600)
    return Path(d) / f"{name}.pem", Path(d) / f"{name}.key"


# In a sandbox, on 127.0.0.1:argv[1]: answers any request with 101, then echoes bytes.
UPGRADE_ECHO_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    c, _ = s.accept()
    d = b""
    while b"\\r\\n\\r\\n" not in d:
        x = c.recv(4096)
        if not x:
            break
        d += x
    c.sendall(b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n")
    rest = d.partition(b"\\r\\n\\r\\n")[2]
    if rest:
        c.sendall(rest)
    while x := c.recv(65536):
        c.sendall(x)
    c.close()
"""


def read_head(s):
    """Reads a response head (up to the blank line) from socket s."""
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            break
        head += d
    return head


def read_exactly(s, n):
    """Reads n bytes from socket s (fewer when it closes)."""
    got = b""
    while len(got) < n:
        d = s.recv(4096)
        if not d:
            break
        got += d
    return got


def debug_agent_fixture(name):
    """A module-scoped fixture: a second agent logging at debug level (so that
    "never logged" covers every level), leak-checked and stopped at the end."""

    @pytest.fixture(scope="module")
    def dagent(templates_dir, agent):
        a = start_agent(name, templates_dir, extra_args=["--log-level", "debug"])
        yield a
        stop_agent(a)

    return dagent


def write_token_file(directory):
    """A fresh bearer token in DIRECTORY/token (0600, as --token-file wants it):
    (path, token)."""
    token = secrets.token_hex(24)
    tf = Path(directory) / "token"
    tf.write_text(token + "\n")
    tf.chmod(0o600)
    return tf, token


def start_tcp_agent(name, templates_dir, tmp_path_factory, extra_args=()):
    """start_agent() that also listens on 127.0.0.1:<free port> behind a fresh
    token; the agent carries .token, .token_file and .port."""
    tf, token = write_token_file(tmp_path_factory.mktemp(f"{name}-token"))
    port = find_free_port()
    a = start_agent(name, templates_dir, listen=f"127.0.0.1:{port}", token_file=tf, extra_args=list(extra_args))
    a.token, a.token_file, a.port = token, tf, port
    return a


def tcp_client(a, token, timeout=120):
    """A client of a's TCP listener with this token (None: none); what it
    creates is deleted by the leak check as a.client's is."""
    c = Client(tcp=("127.0.0.1", a.port), token=token, timeout=timeout)
    c.created = a.client.created
    return c


def stop_agent(a):
    try:
        a.teardown()
    finally:
        if a in AGENTS:
            AGENTS.remove(a)


@pytest.fixture(scope="session")
def agent(templates_dir):
    a = start_agent("main", templates_dir)
    yield a
    stop_agent(a)


@pytest.fixture
def client(agent):
    return agent.client


@pytest.fixture(autouse=True)
def leak_check(request, agent):
    """After every test: delete what the test created, then assert that no
    sandbox leaves anything behind (mounts, cgroups, runc state, state dir
    entries, processes, netns) for every running agent."""
    for a in AGENTS:
        a.client.created.clear()
        if not a.alive():
            # it died after the previous test's checks: say so, start it again
            print(f"agent [{a.name}] had exited ({a.proc.returncode}); restarting it")
            a.scrub()
            a.start()
    request.node._agent_log_offsets = {id(a): a.log_size() for a in AGENTS}
    yield
    problems = []
    for a in list(AGENTS):
        ids = list(a.client.created)
        if not a.alive():
            try:
                a.start()
            except RuntimeError as e:
                problems.append(f"[{a.name}] agent could not be restarted after the test: {e}")
                a.scrub()
                continue
        for sid in ids:
            try:
                r = a.client.delete(f"/v1/sandboxes/{sid}", timeout=60)
                if r.status not in (204, 404):
                    problems.append(f"[{a.name}] DELETE {sid} in cleanup -> {r}")
            except OSError as e:
                problems.append(f"[{a.name}] DELETE {sid} in cleanup failed: {e}")
                try:
                    a.proc.wait(3)  # a dropped connection may be the agent going down
                except subprocess.TimeoutExpired:
                    pass
                if not a.alive():
                    problems.append(f"[{a.name}] the agent died (exit status {a.proc.returncode}) "
                                    f"while deleting {sid}: restarted it (see its stderr below)")
                    try:
                        a.start()
                        a.client.delete(f"/v1/sandboxes/{sid}", timeout=60)
                    except (RuntimeError, OSError) as e2:
                        problems.append(f"[{a.name}] restart/delete after the crash failed: {e2}")
        try:
            r = a.client.get("/v1/sandboxes", timeout=10)
            listed = [s["id"] for s in r.json()["sandboxes"]] if r.status == 200 else []
        except Exception as e:
            listed = []
            problems.append(f"[{a.name}] list after the test failed: {e}")
        if listed:
            problems.append(f"[{a.name}] sandboxes still listed after cleanup: {listed}")
            for sid in listed:
                a.client.delete(f"/v1/sandboxes/{sid}", timeout=60)
        left = a.leftovers(ids)
        if left:
            # A process killed a moment ago can take a little while to be
            # reaped; anything still there after a few seconds is a leak.
            deadline = time.monotonic() + 5
            while left and time.monotonic() < deadline:
                time.sleep(0.2)
                left = a.leftovers(ids)
        if left:
            problems.append(f"[{a.name}] leaked after deleting {ids}:\n    " + "\n    ".join(left))
            a.scrub()
    if problems:
        pytest.fail("LEAK CHECK:\n" + "\n".join(problems), pytrace=False)


def pytest_collection_modifyitems(config, items):
    """The cluster tests' server (tests/integration/cluster.py): on the real
    control plane (SANDPIT_K8S=real) tests marked fixture_only are deselected;
    on the fixture API server tests marked real_only are skipped."""
    real = os.environ.get("SANDPIT_K8S") == "real"
    keep, drop = [], []
    for item in items:
        if real and item.get_closest_marker("fixture_only"):
            drop.append(item)
            continue
        m = item.get_closest_marker("real_only")
        if not real and m:
            why = m.args[0] if m.args else "needs the real control plane"
            item.add_marker(pytest.mark.skip(reason=f"real kube-apiserver only ({why}): make test-k8s"))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    """Stop the real control plane (by pid) if a cluster test started it."""
    import sys
    cluster = sys.modules.get("cluster")
    if cluster is not None:
        cluster.shutdown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        offsets = getattr(item, "_agent_log_offsets", {})
        for a in AGENTS:
            tail = a.log_tail(lines=40, since=offsets.get(id(a), 0))
            if tail.strip():
                rep.sections.append((f"agent [{a.name}] stderr during the test (tail)", tail))


@pytest.fixture
def make_sandbox(client):
    """Create a sandbox (template `host` unless given); it is deleted after the
    test by the leak check if the test did not delete it."""

    def make(**spec):
        return client.create(**spec)

    return make


@pytest.fixture
def sandbox(make_sandbox):
    return make_sandbox()


@pytest.fixture
def unique():
    return rand_suffix()


def wait_for(pred, timeout, interval=0.1, what="condition"):
    """Poll PRED until it returns a truthy value or TIMEOUT seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)


def read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def need_default_template():
    if not DEFAULT_ROOTFS.is_dir():
        pytest.skip(f"{DEFAULT_ROOTFS} is missing: build the default template with `make rootfs` "
                    "(mk/templates.sh default)")
