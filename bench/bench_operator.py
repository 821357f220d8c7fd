#!/usr/bin/python3
"""Operator rows for `make bench` (docs/performance.md, "Operator").

Starts the fixture API server (tests/fixtures/kube-apiserver.py, Python) or,
with --server real, a real kube-apiserver with etcd and the controller manager
(tests/fixtures/control_plane.py, binaries from $KUBEBUILDER_ASSETS), a
real agent in cluster mode (its own Lease, capacity for 200 small sandboxes)
and the real sandpit-operator (--workers 4), then measures, in one run:
  - apply -> Ready through the operator for 1 sandbox (sequential) and for 200
    created at once (16 parallel POSTs), per object from its POST to the Ready
    condition seen on a watch; beside the agent's own create (POST
    /v1/sandboxes direct) and the fixture's floor (a Secret's POST until its
    watch event, and `kubectl apply` of a Secret);
  - the same 200 at once from a warm pool: a SandboxTemplate of the same shape
    with spec.warmPool.sizePerNode 200, its pool full and settled on the agent
    and in the template's status first; every create must have claimed from
    the pool (the agent's /v1/pools claims and misses are checked);
  - the operator's RSS/PSS with 0 and with 5,000 Sandbox objects in its cache
    (no agent in its namespace: they stay Pending/Unschedulable; --workers 1).
Everything is deleted and the node checked empty. Standard library only.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from bench import pct, pss_kib, rss_kib  # the agent bench's helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")
SERVER = os.path.join(ROOT, "tests", "fixtures", "kube-apiserver.py")
# on PATH, or where mk/tools.sh (run by `make bench`) installs it
KUBECTL = shutil.which("kubectl") or os.path.join(os.environ.get("SANDPIT_TOOLS_DIR") or "/var/cache/sandpit/tools", "bin", "kubectl")
OP_NS = "sandpit-system"
NODE = "bench-node"
SBX = "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxes"
SECRETS = "/api/v1/namespaces/default/secrets"
TEMPLATES = "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxtemplates"
POOL_TEMPLATE = "bench-pool"
RES = {"cpu": "100m", "memory": "64Mi", "disk": "16Mi", "pids": 64}
AGENT_BODY = {"template": "host", "cpu": 0.1, "memory": 64 << 20, "disk": 16 << 20, "pids": 64}
# The same with a whole core. runc's and sandpit-init's start run in the sandbox's
# cgroup; the agent writes the CPU quota only once init is ready, so these rows
# show whether a small quota still slows the create (it did, 480 ms, before).
RES_CORE = dict(RES, cpu="1")
AGENT_BODY_CORE = dict(AGENT_BODY, cpu=1.0)


def fmt(xs):
    return "%.1f" % pct(xs, 50), "%.1f" % pct(xs, 95)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("%s not reached within %ss" % (what, timeout))
        time.sleep(0.05)


class Kube:
    """The fixture API server; one keep-alive HTTPS connection per thread."""

    label = "fixture API server"

    def __init__(self, tmp):
        self.dir = tmp
        self.log = open(os.path.join(tmp, "server.log"), "w")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", SERVER, "--dir", tmp, "--bookmark-interval", "1", "--history", "50000"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.port, self.token, self.kubeconfig = info["port"], info["token"], info["kubeconfig"]
        self.ctx = ssl.create_default_context(cafile=info["ca"])
        self.local = threading.local()

    def request(self, method, path, body=None, ctype="application/json"):
        for attempt in (0, 1):
            c = getattr(self.local, "conn", None)
            if c is None:
                c = self.local.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                                  timeout=60)
            h = {"Accept": "application/json", "Authorization": "Bearer " + self.token}
            data = None
            if body is not None:
                h["Content-Type"] = ctype
                data = json.dumps(body).encode()
            try:
                c.request(method, path, body=data, headers=h)
                r = c.getresponse()
                out = r.read()
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
                continue
            return r.status, (json.loads(out) if out else None)

    def ok(self, method, path, body=None, want=(200, 201), ctype="application/json"):
        st, obj = self.request(method, path, body, ctype)
        if st not in want:
            raise RuntimeError("%s %s: %s %s" % (method, path, st, obj))
        return obj

    def kubectl(self, *args, input=None):
        p = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir",
                            os.path.join(self.dir, "cache"), *args], capture_output=True, text=True,
                           input=input, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("kubectl %s: %s" % (" ".join(args), p.stderr))
        return p

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


class RealKube(Kube):
    """A real kube-apiserver and kube-controller-manager from KUBEBUILDER_ASSETS
    with etcd (tests/fixtures/control_plane.py), the same interface."""

    label = "kube-apiserver v1.32 + etcd"

    def __init__(self, tmp, assets):
        sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
        from control_plane import ControlPlane
        self.dir = tmp
        self.cp = ControlPlane(assets, os.path.join(tmp, "control-plane")).start()
        self.port, self.token, self.kubeconfig = self.cp.port, self.cp.token, self.cp.kubeconfig
        self.ctx = ssl.create_default_context(cafile=self.cp.ca)
        self.local = threading.local()

    def kubectl(self, *args, input=None):
        p = super().kubectl(*args, input=input)
        if args[:1] == ("apply",) and "customresourcedefinition" in p.stdout:
            super().kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        return p

    def stop(self):
        self.cp.stop()


class Watcher(threading.Thread):
    """Watches a collection and records, by name, when each object was first
    seen Ready=True and when it was deleted (monotonic seconds)."""

    def __init__(self, kube, path):
        super().__init__(daemon=True)
        self.kube, self.path = kube, path
        self.ready, self.deleted, self.added = {}, {}, {}
        self.cond = threading.Condition()
        self.stopping = False
        st, lst = kube.request("GET", path)
        self.rv = lst["metadata"]["resourceVersion"]
        self.sock = None
        self.start()

    def run(self):
        while not self.stopping:
            try:
                self.stream()
            except (OSError, ValueError):
                if self.stopping:
                    return
                time.sleep(0.1)

    def stream(self):
        raw = socket.create_connection(("127.0.0.1", self.kube.port))
        self.sock = self.kube.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock.sendall(("GET %s?watch=1&allowWatchBookmarks=true&resourceVersion=%s HTTP/1.1\r\n"
                           "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\nAccept: application/json\r\n\r\n"
                           % (self.path, self.rv, self.kube.token)).encode())
        f = self.sock.makefile("rb")
        while f.readline().strip():
            pass
        buf = b""
        while not self.stopping:
            size = int(f.readline().strip().split(b";")[0], 16)
            if size == 0:
                return
            buf += f.read(size)
            f.readline()
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.event(json.loads(line))

    def event(self, ev):
        now = time.monotonic()
        obj = ev["object"]
        if ev["type"] == "ERROR":
            raise ValueError("watch error: %s" % obj)
        self.rv = obj["metadata"].get("resourceVersion", self.rv)
        if ev["type"] == "BOOKMARK":
            return
        name = obj["metadata"]["name"]
        with self.cond:
            if ev["type"] == "ADDED":
                self.added.setdefault(name, now)
            if ev["type"] == "DELETED":
                self.deleted[name] = now
            conds = obj.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                self.ready.setdefault(name, now)
            self.cond.notify_all()

    def wait(self, pred, timeout, what):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise RuntimeError("%s not seen within %ss" % (what, timeout))

    def stop(self):
        self.stopping = True
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.join(5)


class Agent:
    """A real agent in cluster mode on TCP: it writes its own Lease with the capacity given."""

    def __init__(self, kube, templates, tmp):
        self.tmp = tmp
        self.token = secrets.token_hex(24)
        self.token_file = os.path.join(tmp, "agent-token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.port = free_port()
        self.parent = "sandpit-bench-op-%d" % os.getpid()
        self.log = open(os.path.join(tmp, "agent.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "sandpit-agent"), "--kubeconfig", kube.kubeconfig, "--node-name", NODE,
             "--namespace", OP_NS, "--listen", "127.0.0.1:%d" % self.port, "--token-file", self.token_file,
             "--socket", os.path.join(tmp, "agent.sock"), "--state-dir", os.path.join(tmp, "state"),
             "--templates-dir", templates, "--cgroup-parent", self.parent, "--capacity-cpu", "64",
             "--capacity-memory", str(64 << 30), "--log-level", "warning"],
            stderr=self.log)
        self.local = threading.local()

    def call(self, method, path, body=None):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request(method, path, json.dumps(body) if body is not None else None,
                  {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)

    def ids(self):
        st, lst = self.call("GET", "/v1/sandboxes")
        items = lst.get("sandboxes", lst) if isinstance(lst, dict) else lst
        return [s["id"] for s in items]

    def pools(self):
        """GET /v1/pools: {"pools": [...], "used": {"cpu", "memory"}, ...}."""
        st, out = self.call("GET", "/v1/pools")
        if st != 200:
            raise RuntimeError("agent GET /v1/pools: %s %s" % (st, out))
        return out

    def pool(self, name):
        return next((p for p in self.pools()["pools"] if p["name"] == name), None)

    def empty(self):
        """No sandbox listed, no pool, and nothing counted as used: the pools'
        waiting sandboxes (never listed) are gone too."""
        out = self.pools()
        return not self.ids() and not out["pools"] and not out["used"]["cpu"] and not out["used"]["memory"]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()
        # The agent leaves its (now empty) parent cgroup for a next agent; there is none.
        for ctl in os.listdir("/sys/fs/cgroup"):
            for cg in (os.path.join("/sys/fs/cgroup", ctl, self.parent), os.path.join("/sys/fs/cgroup", self.parent)):
                if os.path.isdir(cg):
                    try:
                        os.rmdir(cg)
                    except OSError as e:
                        print("bench: cannot remove %s: %s" % (cg, e), file=sys.stderr)


class Operator:
    def __init__(self, kube, token_file, tmp, workers, namespace=OP_NS):
        self.argv = lambda port: [
            os.path.join(BIN, "sandpit-operator"), "--kubeconfig", kube.kubeconfig, "--agent-token-file", token_file,
            "--namespace", namespace, "--health-listen", "127.0.0.1:%d" % port, "--workers", str(workers),
            "--resync-seconds", "300", "--log-level", "warning",
            "--agent-insecure-http"]  # the bench's agent serves plain HTTP on loopback
        self.tmp = tmp
        self.start()

    def start(self):
        self.port = free_port()
        self.log = open(os.path.join(self.tmp, "operator-%d.log" % self.port), "w")
        self.proc = subprocess.Popen(self.argv(self.port), stderr=self.log)

    def get(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return None, ""

    def wait_ready(self, timeout=120, tries=3):
        wait_for(lambda: self.proc.poll() is not None or self.get("/readyz")[0] == 200, timeout, "operator /readyz")
        if self.proc.poll() is not None:
            self.log.close()
            with open(self.log.name) as f:
                log = f.read()
            # The port free_port() found can be taken meanwhile (as a client's local port).
            if "Cannot serve health" in log and tries > 1:
                self.start()
                return self.wait_ready(timeout, tries - 1)
            raise RuntimeError("the operator exited at start (%s):\n%s" % (self.proc.returncode, log[-3000:]))

    def cached(self):
        """Sandboxes in the operator's cache, from its /metrics."""
        st, text = self.get("/metrics")
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("sandpit_operator_sandboxes{"))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def sandbox(name, res=RES):
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
            "spec": {"template": "host", "resources": res, "timeout": "30m"}}


def pooled_sandbox(name):
    """A Sandbox of the pool's template that sets no resources: the template's
    (RES), the pool's shape, so its create claims."""
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
            "spec": {"template": POOL_TEMPLATE, "timeout": "30m"}}


def pool_template(templates_dir, size):
    # languages without python: no pre-started kernel, as a cold create of the host template
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": POOL_TEMPLATE},
            "spec": {"source": {"path": os.path.join(os.path.abspath(templates_dir), "host")}, "resources": RES,
                     "languages": ["bash"], "warmPool": {"sizePerNode": size}}}


def secret(name):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": "v"}}


def bench_fixture_floor(kube, runs):
    """The fixture's own floor: a write seen on a watch, and kubectl apply."""
    w = Watcher(kube, SECRETS)
    seen = []
    try:
        for i in range(runs):
            name = "floor-%d" % i
            t = time.monotonic()
            kube.ok("POST", SECRETS, secret(name))
            w.wait(lambda: name in w.added, 30, "secret " + name)
            seen.append((w.added[name] - t) * 1000)
    finally:
        w.stop()
    applied = []
    for i in range(max(5, runs // 2)):
        t = time.monotonic()
        kube.kubectl("apply", "-f", "-", input=json.dumps(secret("kubectl-%d" % i)))
        applied.append((time.monotonic() - t) * 1000)
    return seen, applied


def bench_agent_direct(agent, runs, body=AGENT_BODY):
    created = []
    for _ in range(runs):
        t = time.monotonic()
        st, sb = agent.call("POST", "/v1/sandboxes", body)
        created.append((time.monotonic() - t) * 1000)
        if st != 201:
            raise RuntimeError("agent create: %s %s" % (st, sb))
        agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
    return created


def delete_all(kube, w, names, parallel):
    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        list(ex.map(lambda n: kube.ok("DELETE", "%s/%s" % (SBX, n), want=(200, 202)), names))
    w.wait(lambda: all(n in w.deleted for n in names), 300, "deletion of %d sandboxes" % len(names))


def bench_one(kube, w, agent, runs, res=RES, body=AGENT_BODY, prefix="one"):
    """One Sandbox at a time through the operator, each beside one create
    straight on the agent (interleaved, so both see the same machine)."""
    lat, direct = [], []
    for i in range(runs):
        direct += bench_agent_direct(agent, 1, body)
        name = "%s-%d" % (prefix, i)
        t = time.monotonic()
        kube.ok("POST", SBX, sandbox(name, res))
        w.wait(lambda: name in w.ready, 60, name + " Ready")
        lat.append((w.ready[name] - t) * 1000)
        delete_all(kube, w, [name], 1)
    return lat, direct


def bench_many(kube, w, n, parallel, prefix="many", make=sandbox):
    names = ["%s-%d" % (prefix, i) for i in range(n)]
    sent = {}

    def post(name):
        sent[name] = time.monotonic()
        kube.ok("POST", SBX, make(name))

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        list(ex.map(post, names))
    posted = time.monotonic() - t0
    w.wait(lambda: all(nm in w.ready for nm in names), 300, "%d sandboxes Ready" % n)
    wall = max(w.ready[nm] for nm in names) - t0
    lat = [(w.ready[nm] - sent[nm]) * 1000 for nm in names]
    t1 = time.monotonic()
    delete_all(kube, w, names, parallel)
    return lat, wall, posted, time.monotonic() - t1


def bench_pool(kube, w, op, agent, templates_dir, n, size, parallel):
    """n Sandboxes at once, as bench_many(), from a template's warm pool of size
    on the one node. The pool must be full and settled (the agent's view: all
    ready, none being made; the template's status.warmPool ready == total)
    before the first POST, and afterwards the agent must count a claim for
    each create (at most size of them, the rest misses: cold creates)."""
    t0 = time.monotonic()
    tmpl = kube.ok("POST", TEMPLATES, pool_template(templates_dir, size))
    name = "sbxt-" + tmpl["metadata"]["uid"]

    def full():
        p = agent.pool(name)
        return p and p["size"] == size and p["ready"] == size and not p["creating"]
    try:
        # Sized past the agent's --capacity-*, it never fills: the pools fill only what is free.
        wait_for(full, 600, "the pool's %d sandboxes ready on the agent" % size)
    except RuntimeError:
        print("bench: pool: %s" % agent.pool(name), file=sys.stderr)
        raise
    fill_s = time.monotonic() - t0
    # The status is as fresh as the operator's last pools pass: the one when the
    # template came (ready 0), the next at --resync-seconds. An operator at
    # start makes a pass: restart it, so the status and the scheduler's view of
    # the node's ready pooled sandboxes are those of the full pool.
    op.stop()
    op.start()
    op.wait_ready()
    want = {"ready": size, "total": size}
    wait_for(lambda: kube.ok("GET", "%s/%s" % (TEMPLATES, POOL_TEMPLATE)).get("status", {}).get("warmPool") == want,
             60, "the template's status.warmPool %s" % want)
    before = agent.pool(name)
    if before["ready"] != size or before["creating"] or before["claims"] or before["misses"]:
        raise RuntimeError("the pool is not full and untouched before the creates: %s" % before)
    lat, wall, posted, deleted_s = bench_many(kube, w, n, parallel, "pool", pooled_sandbox)
    after = agent.pool(name)
    claims, misses = after["claims"] - before["claims"], after["misses"] - before["misses"]
    # Every create of the pool's shape is a claim or a miss; with the pool full,
    # the first min(n, size) of them cannot miss.
    if claims + misses != n or claims < min(n, size):
        raise RuntimeError("%d creates from a pool of %d: %d claims, %d misses (pool: %s)"
                           % (n, size, claims, misses, after))
    last = agent.pool(name)  # refilling meanwhile
    t1 = time.monotonic()
    kube.ok("DELETE", "%s/%s" % (TEMPLATES, POOL_TEMPLATE), want=(200, 202))
    wait_for(lambda: agent.pool(name) is None, 60, "the pool's removal")
    wait_for(agent.empty, 300, "the pool's waiting sandboxes to be gone")
    return (lat, wall, posted, deleted_s, claims, misses, fill_s, time.monotonic() - t1,
            last["ready"] + last["creating"])


def bench_memory(kube, token_file, tmp, n, parallel):
    """The operator's RSS/PSS with 0 and with n Sandboxes cached. Its namespace
    holds no agent Lease, so every Sandbox stays Pending (Unschedulable)."""
    empty_ns = "bench-no-agents"
    kube.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": empty_ns}})
    op = Operator(kube, token_file, tmp, 1, namespace=empty_ns)
    try:
        op.wait_ready()
        time.sleep(0.5)
        base = rss_kib(op.proc.pid), pss_kib(op.proc.pid)
    finally:
        op.stop()
    path = "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxes"
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        list(ex.map(lambda i: kube.ok("POST", path, sandbox("idle-%d" % i)), range(n)))
    create_s = time.monotonic() - t0
    op = Operator(kube, token_file, tmp, 1, namespace=empty_ns)
    try:
        t0 = time.monotonic()
        op.wait_ready()
        wait_for(lambda: op.cached() >= n, 120, "%d sandboxes in the operator's cache" % n)
        sync_s = time.monotonic() - t0
        full = rss_kib(op.proc.pid), pss_kib(op.proc.pid)
    finally:
        op.stop()
    return base, full, create_s, sync_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates-dir", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--many", type=int, default=200)
    ap.add_argument("--cached", type=int, default=5000)
    ap.add_argument("--parallel", type=int, default=16, help="client threads for the bulk POSTs")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pool-size", type=int, default=None,
                    help="the warm pool's sizePerNode for the pooled row (default: --many)")
    ap.add_argument("--only-pool", action="store_true",
                    help="only the at-once rows: cold, then from a warm pool")
    ap.add_argument("--server", choices=("fixture", "real"), default="fixture",
                    help="the fixture API server, or a real one from $KUBEBUILDER_ASSETS")
    args = ap.parse_args()
    if not os.path.exists(KUBECTL):
        print("| operator rows | n/a | n/a | kubectl is not installed |")
        return 0
    tmp = tempfile.mkdtemp(prefix="sandpit-bench-op-")
    os.chmod(tmp, 0o711)  # with user namespaces sandboxes search their way in
    rows = []
    kube = RealKube(tmp, os.environ["KUBEBUILDER_ASSETS"]) if args.server == "real" else Kube(tmp)
    agent = op = w = None
    try:
        kube.kubectl("apply", "-f", os.path.join(ROOT, "crds"))
        kube.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OP_NS}})
        if not args.only_pool:
            seen, applied = bench_fixture_floor(kube, args.runs)

        agent = Agent(kube, args.templates_dir, tmp)
        lease = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/sandpit-agent-%s" % (OP_NS, NODE)
        wait_for(lambda: kube.request("GET", lease)[0] == 200, 30, "the agent's Lease")

        op = Operator(kube, agent.token_file, tmp, args.workers)
        op.wait_ready()
        w = Watcher(kube, SBX)
        bench_one(kube, w, agent, 2, prefix="warm")
        if not args.only_pool:
            one, direct = bench_one(kube, w, agent, args.runs)
            one_core, direct_core = bench_one(kube, w, agent, args.runs, RES_CORE, AGENT_BODY_CORE, "core")
        many, wall, posted, deleted_s = bench_many(kube, w, args.many, args.parallel)
        left = agent.ids()
        if left:
            raise RuntimeError("the node still holds %d sandboxes after the deletes" % len(left))
        size = args.many if args.pool_size is None else args.pool_size
        pooled, p_wall, p_posted, p_deleted_s, claims, misses, fill_s, unpool_s, waiting = bench_pool(
            kube, w, op, agent, args.templates_dir, args.many, size, args.parallel)
        if not agent.empty():
            raise RuntimeError("the node is not empty after the pooled row: %s" % agent.pools())
        w.stop()
        w = None
        op.stop()
        op = None

        if not args.only_pool:
            rows.append(("apply → Ready through the operator, 1 sandbox (sequential)", *fmt(one),
                         "cpu 100m; %d runs; %+.1f ms over the agent's own create"
                         % (len(one), pct(one, 50) - pct(direct, 50))))
            rows.append(("agent create → ready (POST /v1/sandboxes direct, same resources)", *fmt(direct),
                         "the floor without Kubernetes; interleaved with the row above"))
            rows.append(("apply → Ready through the operator, 1 sandbox, cpu 1", *fmt(one_core),
                         "%d runs; %+.1f ms over the agent's own create"
                         % (len(one_core), pct(one_core, 50) - pct(direct_core, 50))))
            rows.append(("agent create → ready (direct), cpu 1", *fmt(direct_core),
                         "a whole core; interleaved"))
        rows.append(("apply → Ready, %d sandboxes created at once, per object" % args.many, *fmt(many),
                     "all Ready %.1f s after the first POST (POSTs took %.1f s, %d client threads, --workers %d); "
                     "deleting all took %.1f s; node empty after"
                     % (wall, posted, args.parallel, args.workers, deleted_s)))
        rows.append(("apply → Ready, %d sandboxes created at once from a warm pool, per object" % args.many,
                     *fmt(pooled),
                     "all Ready %.1f s after the first POST (POSTs took %.1f s); %d claims, %d misses on the agent; "
                     "pool sizePerNode %d, the same shape, full (filled in %.1f s) and settled first; "
                     "deleting all took %.1f s, then the template (its pool, %d refilled) %.1f s; node empty after"
                     % (p_wall, p_posted, claims, misses, size, fill_s, p_deleted_s, waiting, unpool_s)))
        if not args.only_pool:
            rows.append(("%s: POST Secret → its watch event" % kube.label, *fmt(seen),
                         "the API server's write + watch floor"))
            rows.append(("%s: `kubectl apply` of a Secret" % kube.label, *fmt(applied),
                         "kubectl's own start, discovery cache warm"))
        agent.stop()
        agent = None

        if not args.only_pool:
            base, full, create_s, sync_s = bench_memory(kube, os.path.join(tmp, "agent-token"), tmp, args.cached,
                                                        args.parallel)
            rows.append(("operator memory, 0 Sandboxes cached (RSS / PSS KiB)", "%d" % base[0], "%d" % base[1],
                         "synced, idle"))
            rows.append(("operator memory, %d Sandboxes cached (RSS / PSS KiB)" % args.cached, "%d" % full[0],
                         "%d" % full[1],
                         "%.1f KiB RSS per object; read once the cache held all (%.1f s from start); "
                         "no agent: all Pending, --workers 1; the API server took %.1f s to create them (%.0f/s)"
                         % ((full[0] - base[0]) / args.cached, sync_s, create_s, args.cached / create_s)))
    finally:
        if w:
            w.stop()
        if op:
            op.stop()
        if agent:
            agent.stop()
        kube.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| operator on the %s: what | p50 (ms) | p95 (ms) | note |" % kube.label)
    print("|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
