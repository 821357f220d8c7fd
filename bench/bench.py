#!/usr/bin/python3
"""sandpit benchmarks: sandpit numbers beside their baselines, measured in one run.

Starts its own agent (temporary state dir, cgroup parent sandpit-bench-PID) on
the `host` template, and prints a markdown table of p50/p95 for:
  - create -> ready: sandpit vs bare `runc run` (and `crun run`) of the same rootfs,
    interleaved one by one, with the CPU each takes (agent + runc + init, from /proc);
    --userns both adds an agent with --userns off (with --only-create)
  - exec round trip of `true`: sandpit vs `runc exec`, and the host's own
    posix_spawn of the same binary (the floor no supervisor can beat)
  - files: a 1 MiB write+read round trip, and a 100 MiB tree as tar.gz
    (bench/files_bench.py) beside the host doing the same
  - sustained creates/s against the number of clients (--sustained-clients),
    cold and with a warm pool, with the cores the agent and the machine kept
    busy (/proc); a burst of claims from a settled pool, then the rate once it
    is drained (--only-sustained runs these alone)
  - memory per idle sandbox: agent RSS growth + init PSS, the sandbox cgroup's
    usage, and the system-wide growth of kernel objects (slab, page tables, tmpfs)
Standard library only.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import bench_net
from files_bench import bench_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SANDPIT_BENCH_BIN") or os.path.join(ROOT, "build", "bin")  # another build's, to compare


CPUACCT = "/sys/fs/cgroup/cpuacct"


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def fmt(xs):
    return "%.2f" % pct(xs, 50), "%.2f" % pct(xs, 95)


class Agent:
    count = 0

    def __init__(self, templates, extra=(), wrap=()):
        self.tmp = tempfile.mkdtemp(prefix="sandpit-bench-")
        os.chmod(self.tmp, 0o711)  # with user namespaces sandboxes search their way in
        self.sock = os.path.join(self.tmp, "agent.sock")
        Agent.count += 1  # one cgroup parent per agent: recovery owns what is under it
        self.parent = "sandpit-bench-%d%s" % (os.getpid(), "" if Agent.count == 1 else "-%d" % Agent.count)
        self.log = open(os.path.join(self.tmp, "agent.log"), "w")
        # The agent and what it runs (runc run, runc delete) in a cpuacct cgroup of
        # their own: cpu_s() adds it to the sandboxes' parent, so runc init's and
        # sandpit-init's CPU counts too (they are not the agent's reaped children).
        self.acct = os.path.join(CPUACCT, self.parent + "-agent")
        os.makedirs(self.acct, exist_ok=True)
        self.proc = subprocess.Popen(
            [*wrap, os.path.join(BIN, "sandpit-agent"), "--standalone", "--socket", self.sock,
             "--state-dir", os.path.join(self.tmp, "state"), "--templates-dir", templates,
             "--cgroup-parent", self.parent, "--log-level", "warning",
             "--images-dir", os.path.join(self.tmp, "images"), *extra],
            stderr=self.log, preexec_fn=self._join_acct)
        for _ in range(200):
            if os.path.exists(self.sock):
                break
            time.sleep(0.02)
        self.conn = UnixConn(self.sock)

    def _join_acct(self):
        with open(os.path.join(self.acct, "cgroup.procs"), "w") as f:
            f.write("0")

    def cpu_s(self):
        """CPU seconds the agent, every process it started and every sandbox of it
        used since it started (cpuacct.usage: charged once, to the cgroup a task is
        in as it runs; a removed sandbox's usage stays in its parent's)."""
        total = 0
        for path in (self.acct, os.path.join(CPUACCT, self.parent)):
            try:
                with open(os.path.join(path, "cpuacct.usage")) as f:
                    total += int(f.read())
            except FileNotFoundError:
                pass
        return total / 1e9

    def call(self, method, path, body=None):
        self.conn.request(method, path, json.dumps(body) if body is not None else None)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data and r.getheader("Content-Type", "").startswith("application/json") else data)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        # The agent leaves its (now empty) parent cgroup for the next agent; the
        # bench's parent has no next agent.
        paths = [os.path.join("/sys/fs/cgroup", ctl, self.parent) for ctl in os.listdir("/sys/fs/cgroup")]
        for path in paths + [self.acct]:
            if os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError as e:
                    print("bench: cannot remove %s: %s" % (path, e), file=sys.stderr)


def settle(agent):
    """Waits until the agent's background teardowns have ended (/v1/info
    teardown_pending == 0; an agent without the field has none)."""
    while True:
        st, info = agent.call("GET", "/v1/info")
        assert st == 200, info
        if not info.get("teardown_pending"):
            return
        time.sleep(0.002)


def bench_create(agent, n, cpu=None):
    """Cold create, then delete: the answer, and the background teardown's end
    (unmount, cgroup, network, state dir). Each create starts with the previous
    teardown finished, so it never shares the CPUs with one. With cpu (a list),
    appends the CPU ms per create + delete (Agent.cpu_s: agent, runc, the sandbox)."""
    created, deleted, torn_down = [], [], []
    c0 = agent.cpu_s()
    for _ in range(n):
        t = time.perf_counter()
        st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host"})
        created.append((time.perf_counter() - t) * 1000)
        assert st == 201, sb
        t = time.perf_counter()
        st, _ = agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
        deleted.append((time.perf_counter() - t) * 1000)
        assert st == 204
        settle(agent)
        torn_down.append((time.perf_counter() - t) * 1000)
    if cpu is not None:
        cpu.append((agent.cpu_s() - c0) * 1000 / n)
    return created, deleted, torn_down


def bench_delete_many(agent, n):
    """n idle sandboxes deleted one by one: seconds until the last DELETE
    answered, and until the last teardown ended."""
    ids = []
    for _ in range(n):
        st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host", "timeout": 600})
        assert st == 201, sb
        ids.append(sb["id"])
    t = time.perf_counter()
    for sid in ids:
        st, _ = agent.call("DELETE", "/v1/sandboxes/" + sid)
        assert st == 204
    answered = time.perf_counter() - t
    settle(agent)
    return answered, time.perf_counter() - t


POOL_SIZE = 4


def bench_claim(agent, n):
    """Creates served by the agent's warm pool (`--pool host=4`): each timed
    create starts with the pool full and settled, so no refill runs beside it."""
    out = []
    for _ in range(n):
        for _ in range(3000):
            st, p = agent.call("GET", "/v1/pools/host")
            if st == 200 and p["ready"] == POOL_SIZE and p["creating"] == 0:
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("the warm pool did not fill: %s" % p)
        claims = p["claims"]
        t = time.perf_counter()
        st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host"})
        out.append((time.perf_counter() - t) * 1000)
        assert st == 201, sb
        st, p = agent.call("GET", "/v1/pools/host")
        assert p["claims"] == claims + 1, "the create did not claim a pooled sandbox: %s" % p
        st, _ = agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
        assert st == 204
    return out


def machine_busy_s():
    """CPU seconds all cores spent busy since boot (/proc/stat's cpu line less
    idle and iowait): the whole machine's, other work on it included."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def pool_counters(agent, pool):
    st, p = agent.call("GET", "/v1/pools/" + pool)
    assert st == 200, p
    return p


def pool_settle(agent, pool, size):
    """Waits until the pool holds size ready sandboxes and makes none (and no
    teardown is pending), so a row starts from the same state each time."""
    for _ in range(6000):
        p = pool_counters(agent, pool)
        if p["ready"] == size and p["creating"] == 0:
            return settle(agent)
        time.sleep(0.01)
    raise RuntimeError("the warm pool did not fill: %s" % p)


def bench_sustained(agent, n, workers, pool=None, refill_to=0):
    """n creates, each deleted as soon as it answered, from `workers` clients at
    once for as long as it takes (teardowns included: the run ends when the
    last one did). Returns creates/s over the whole run, each create's latency,
    the CPU ms per create + delete (Agent.cpu_s: the agent, its runc and the
    sandboxes; with a pool the refills' makes), the cores those and the whole machine kept
    busy on average (of os.cpu_count()), and, with a pool, how many creates
    claimed (its claims counter) and how many found it empty (misses). With
    refill_to, the CPU figure waits for the pool to hold that many again, so
    it counts the make of each claimed sandbox's successor; without, the
    refills still running at the end are not counted."""
    lock = threading.Lock()
    todo = [n]
    lat, errors = [], []

    def worker():
        conn = UnixConn(agent.sock)
        while True:
            with lock:
                if todo[0] == 0:
                    return
                todo[0] -= 1
            t = time.perf_counter()
            conn.request("POST", "/v1/sandboxes", json.dumps({"template": "host"}))
            r = conn.getresponse()
            body = r.read()
            dt = (time.perf_counter() - t) * 1000
            if r.status != 201:
                errors.append(body[:200])
                continue
            conn.request("DELETE", "/v1/sandboxes/" + json.loads(body)["id"])
            conn.getresponse().read()
            with lock:
                lat.append(dt)

    p0 = pool_counters(agent, pool) if pool else None
    c0, m0 = agent.cpu_s(), machine_busy_s()
    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    settle(agent)
    wall_td = time.perf_counter() - t
    c1, m1 = agent.cpu_s(), machine_busy_s()
    if errors:
        raise RuntimeError("sustained creates failed: %s" % errors[:3])
    if refill_to:
        pool_settle(agent, pool, refill_to)
    out = {"rate": n / wall, "lat": lat, "wall": wall, "tail_s": wall_td - wall,
           "cpu_ms": (agent.cpu_s() - c0) * 1000 / n,
           "agent_cores": (c1 - c0) / wall_td, "machine_cores": (m1 - m0) / wall_td,
           "load": os.getloadavg()[0]}
    if pool:
        p1 = pool_counters(agent, pool)
        out["claims"] = p1["claims"] - p0["claims"]
        out["misses"] = p1["misses"] - p0["misses"]
    return out


def sustained_rows(cold, pooled, n, clients, rounds, burst, pool_size):
    """The sustained rows: for each number of clients, cold and with the warm
    pool (settled full before each run), interleaved and repeated rounds times
    (medians). Then a burst: the pool resized to burst and settled, burst
    creates from 4 clients (each must claim), and right after, with the pool
    empty, n more: the rate its refills allow."""
    runs = {}
    for _ in range(rounds):
        for w in clients:
            for who, ag in (("cold", cold), ("pool", pooled)):
                if ag is pooled:
                    pool_settle(ag, "host", pool_size)
                else:
                    settle(ag)
                r = bench_sustained(ag, n, w, *(("host", pool_size) if ag is pooled else ()))
                print(json.dumps({"sustained": who, "clients": w, "rate": round(r["rate"], 2),
                                  "p50": round(pct(r["lat"], 50), 1), "cpu_ms": round(r["cpu_ms"], 1),
                                  "agent_cores": round(r["agent_cores"], 2),
                                  "machine_cores": round(r["machine_cores"], 2),
                                  "load": round(r["load"], 1), "tail_s": round(r["tail_s"], 2),
                                  "claims": r.get("claims"),
                                  "misses": r.get("misses")}), file=sys.stderr)
                runs.setdefault((who, w), []).append(r)
    med = statistics.median
    ncpu = os.cpu_count()
    rows = []
    for (who, w), rs in runs.items():
        note = ("%d creates x %d; latency p50 %.1f, p95 %.1f ms; CPU %.1f ms a create + delete;"
                " cores busy: agent+sandboxes %.2f, machine %.2f of %d; load %.1f; last teardown %.2f s after"
                " the last answer"
                % (n, len(rs), med(pct(r["lat"], 50) for r in rs), med(pct(r["lat"], 95) for r in rs),
                   med(r["cpu_ms"] for r in rs), med(r["agent_cores"] for r in rs),
                   med(r["machine_cores"] for r in rs), ncpu, med(r["load"] for r in rs),
                   med(r["tail_s"] for r in rs)))
        if who == "pool":
            note += "; claimed %d of %d (misses: cold)" % (med(r["claims"] for r in rs), n)
        what = "cold" if who == "cold" else "warm pool of %d" % pool_size
        rows.append(("sustained creates, %s, %d client%s (creates/s)" % (what, w, "s" if w > 1 else ""),
                     "%.1f/s" % med(r["rate"] for r in rs), "", note))
    if burst:
        st, p = pooled.call("PUT", "/v1/pools/host", {"template": "host", "size": burst})
        assert st == 200, p
        try:
            pool_settle(pooled, "host", burst)
            b = bench_sustained(pooled, burst, 4, "host")
            assert b["claims"] == burst and b["misses"] == 0, \
                "a burst create did not claim a pooled sandbox: %s" % b
            d = bench_sustained(pooled, n, 4, "host")  # the pool empty, refilling
        finally:
            st, p = pooled.call("PUT", "/v1/pools/host", {"template": "host", "size": pool_size})
            assert st == 200, p
        for what, r in (("burst: %d claims from a settled pool of %d, 4 clients" % (burst, burst), b),
                        ("then %d creates with that pool drained (refills), 4 clients" % n, d)):
            rows.append(("sustained creates, " + what + " (creates/s)", "%.1f/s" % r["rate"], "",
                         "latency p50 %.1f, p95 %.1f ms; claimed %d, cold %d; cores busy: agent+sandboxes %.2f,"
                         " machine %.2f of %d; load %.1f"
                         % (*(pct(r["lat"], q) for q in (50, 95)), r["claims"], r["misses"],
                            r["agent_cores"], r["machine_cores"], ncpu, r["load"])))
    return rows


def exec_raw(sock_path, sid, n):
    """exec of `true` on one keep-alive connection, reading the chunked NDJSON raw."""
    body = json.dumps({"cmd": ["true"]}).encode()
    req = (b"POST /v1/sandboxes/%s/exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % (sid.encode(), len(body))) + body
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(req)
        buf = b""
        while not buf.endswith(b"\r\n0\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("agent closed the connection")
            buf += chunk
        out.append((time.perf_counter() - t) * 1000)
        assert b'"exit_code":0' in buf, buf
    s.close()
    return out


def bare_bundle(rt_name, templates, tmp, args):
    """A bundle running args on the host template's rootfs, as `runc spec` makes it."""
    bundle = os.path.join(tmp, "bundle-" + rt_name)
    if os.path.exists(os.path.join(bundle, "config.json")):
        return bundle
    os.makedirs(bundle)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    tpl = os.path.join(templates, "host")
    with open(os.path.join(tpl, "template.json")) as f:
        binds = json.load(f).get("binds", [])
    cfg["root"] = {"path": os.path.join(tpl, "rootfs"), "readonly": True}
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    cfg["process"]["rlimits"] = []
    for b in binds:
        cfg["mounts"].append({"destination": b, "type": "bind", "source": b,
                              "options": ["rbind", "ro", "nosuid", "nodev"]})
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return bundle


def bench_bare_run(rt, templates, tmp, n, cpu=None):
    """`rt run` of /bin/true, n times; with cpu (a list), appends the CPU ms of
    each run (rt and everything it started, as reaped children)."""
    if not shutil.which(rt):
        return None, "%s not installed" % rt
    bundle = bare_bundle(rt, templates, tmp, ["/bin/true"])
    root = os.path.join(tmp, "root-" + rt)
    out = []
    c0 = os.times()
    for i in range(n):
        t = time.perf_counter()
        p = subprocess.run([rt, "--root", root, "run", "--bundle", bundle, "bench-%s-%d" % (rt, i)],
                           stdin=subprocess.DEVNULL, capture_output=True)
        out.append((time.perf_counter() - t) * 1000)
        if p.returncode != 0:
            return None, "%s run fails here: %s" % (rt, (p.stderr or p.stdout).decode().strip().splitlines()[-1:])
    if cpu is not None:
        c1 = os.times()
        cpu.append((c1.children_user + c1.children_system - c0.children_user - c0.children_system) * 1000 / n)
    return out, None


def bench_runc_exec(templates, tmp, n):
    bundle = bare_bundle("runc-exec", templates, tmp, ["/bin/sleep", "600"])
    root = os.path.join(tmp, "root-exec")
    cid = "bench-exec-%d" % os.getpid()
    # A detached container inherits runc's stdio: a pipe here would stay open
    # for the container's whole life, so its errors go to a file.
    errlog = os.path.join(tmp, "runc-exec.err")
    with open(errlog, "w") as err:
        p = subprocess.run(["runc", "--root", root, "run", "-d", "--bundle", bundle, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    if p.returncode != 0:
        with open(errlog) as err:
            return None, err.read().strip()
    out = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(["runc", "--root", root, "exec", cid, "/bin/true"], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            out.append((time.perf_counter() - t) * 1000)
    finally:
        subprocess.run(["runc", "--root", root, "delete", "--force", cid])
    return out, None


def bench_host_spawn(n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        pid = os.posix_spawn("/usr/bin/true", ["true"], {})
        os.waitpid(pid, 0)
        out.append((time.perf_counter() - t) * 1000)
    return out


def code_raw(sock_path, sid, n, language, code="1+1"):
    """run_code round trips on one keep-alive connection, reading the chunked NDJSON raw."""
    body = json.dumps({"code": code, "language": language}).encode()
    req = (b"POST /v1/sandboxes/%s/code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % (sid.encode(), len(body))) + body
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(req)
        buf = b""
        while not buf.endswith(b"\r\n0\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("agent closed the connection")
            buf += chunk
        out.append((time.perf_counter() - t) * 1000)
        # The kernel's result line is Python's json.dumps ("text": "2").
        assert re.search(rb'"text":\s*"2"', buf), buf
    s.close()
    return out


def bench_code(agent, template, language, runs, cold_runs):
    """Warm: 1+1 in a live context. Cold: the first run_code in a new sandbox
    (the kernel starts), sandbox creation not counted."""
    cold = []
    for _ in range(cold_runs):
        st, sb = agent.call("POST", "/v1/sandboxes", {"template": template, "timeout": 600})
        assert st == 201, sb
        try:
            cold += code_raw(agent.sock, sb["id"], 1, language)
        finally:
            agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
    st, sb = agent.call("POST", "/v1/sandboxes", {"template": template, "timeout": 600})
    assert st == 201, sb
    try:
        code_raw(agent.sock, sb["id"], 20, language)
        warm = code_raw(agent.sock, sb["id"], runs, language)
    finally:
        agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
    return warm, cold


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


KERNEL_FIELDS = ("Slab", "PageTables", "KernelStack", "Shmem")


def kernel_kib():
    """Memory the kernel holds for objects (slab: mounts, cgroups, sockets;
    page tables, stacks) and tmpfs pages (Shmem)."""
    out = 0
    with open("/proc/meminfo") as f:
        for line in f:
            k = line.split(":")[0]
            if k in KERNEL_FIELDS:
                out += int(line.split()[1])
    return out


def bench_memory(agent, n, parent):
    ids = []
    subprocess.run(["sync"])
    time.sleep(0.5)
    base_agent, base_kernel = rss_kib(agent.proc.pid), kernel_kib()
    for _ in range(n):
        st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host", "timeout": 600})
        assert st == 201, sb
        ids.append(sb["id"])
    time.sleep(1.0)
    agent_growth = (rss_kib(agent.proc.pid) - base_agent) / n
    kernel = (kernel_kib() - base_kernel) / n
    init_pss, cg_usage = [], []
    state = os.path.join(agent.tmp, "state", "sandboxes")
    for sid in ids:
        with open(os.path.join(state, sid, "init.pid")) as f:
            init_pss.append(pss_kib(int(f.read().strip())))
        with open("/sys/fs/cgroup/memory/%s/%s/memory.usage_in_bytes" % (parent, sid)) as f:
            cg_usage.append(int(f.read()) / 1024)
    for sid in ids:
        agent.call("DELETE", "/v1/sandboxes/" + sid)
    return agent_growth, statistics.mean(init_pss), statistics.mean(cg_usage), kernel


def bench_metrics_pause(agent, n):
    """GET .../metrics (a fresh cgroup read) beside GET /healthz, and a pause + resume pair."""
    st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host", "timeout": 600})
    assert st == 201, sb
    sid = sb["id"]
    out = {"healthz": [], "metrics": [], "pause": []}
    try:
        for _ in range(n):
            t = time.perf_counter()
            st, _ = agent.call("GET", "/healthz")
            out["healthz"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            st, m = agent.call("GET", "/v1/sandboxes/%s/metrics" % sid)
            out["metrics"].append((time.perf_counter() - t) * 1000)
            assert st == 200, m
        for _ in range(max(10, n // 10)):
            t = time.perf_counter()
            st, r = agent.call("POST", "/v1/sandboxes/%s/pause" % sid, {})
            assert st == 200, r
            st, r = agent.call("POST", "/v1/sandboxes/%s/resume" % sid, {})
            assert st == 200, r
            out["pause"].append((time.perf_counter() - t) * 1000)
    finally:
        agent.call("DELETE", "/v1/sandboxes/" + sid)
    return out


def mount_count():
    """Lines of the node's mount table, as runc and every new mount namespace copy it."""
    with open("/proc/self/mountinfo") as f:
        return sum(1 for _ in f)


def agent_cpu_s(pid):
    """The process's user + system CPU time (all threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prom_value(agent, name):
    st, text = agent.call("GET", "/metrics")
    assert st == 200
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


DENSITY_CIDR = "198.18.128.0/17"  # room for 32k sandboxes; inside the bench's own netns


def bench_density(templates, n, net, window_s, exec_runs):
    """n idle sandboxes on one agent (loopback-only, or with --sandbox-cidr in a
    netns of the bench's own): memory per sandbox, agent RSS, the idle agent's
    CPU over window_s (utime+stime from /proc, so other load on the machine
    does not count), exec round trip p50/p95, then the n deleted one by one.
    Returns a dict; 'reached' < n when a create failed (and why)."""
    ns, wrap, extra = None, (), ["--capacity-cpu", "1000000", "--capacity-memory", "1000Ti"]
    if net:
        ns = "spbd-%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        wrap = ("nsenter", "--net=/run/netns/" + ns)
        extra += ["--sandbox-cidr", DENSITY_CIDR, "--net-table", "sandpit-bench-d%d" % os.getpid()]
    agent = Agent(templates, extra, wrap)
    out = {"n": n, "net": net, "reached": 0, "why": ""}
    ids = []
    bare_tmp = tempfile.mkdtemp(prefix="sandpit-bench-bare-")
    try:
        bench_create(agent, 3)
        # Bare `runc run` with nothing of ours on the node, then again with n sandboxes:
        # what the node's mount table costs runc itself, beside what it costs a create.
        out["bare_empty"], _ = bench_bare_run("runc", templates, bare_tmp, 5)
        out["mounts_empty"] = mount_count()
        subprocess.run(["sync"])
        base_rss, base_kernel = rss_kib(agent.proc.pid), kernel_kib()
        t = time.perf_counter()
        lat = []
        for _ in range(n):
            t1 = time.perf_counter()
            st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host", "timeout": 86400})
            lat.append((time.perf_counter() - t1) * 1000)
            if st != 201:
                out["why"] = "create %d failed: %s %s" % (len(ids) + 1, st, sb)
                break
            ids.append(sb["id"])
        out["create_s"] = time.perf_counter() - t
        out["create_first"], out["create_last"] = lat[:20], lat[-20:]
        out["mounts_full"] = mount_count()
        out["bare_full"], _ = bench_bare_run("runc", templates, bare_tmp, 5)
        out["reached"] = len(ids)
        if not ids:
            return out
        m = len(ids)
        out["rss_mib"] = rss_kib(agent.proc.pid) / 1024
        out["agent_kib"] = (rss_kib(agent.proc.pid) - base_rss) / m
        out["kernel_kib"] = (kernel_kib() - base_kernel) / m
        state = os.path.join(agent.tmp, "state", "sandboxes")
        init_pss, cg = [], []
        for sid in ids:
            with open(os.path.join(state, sid, "init.pid")) as f:
                init_pss.append(pss_kib(int(f.read().strip())))
            with open("/sys/fs/cgroup/memory/%s/%s/memory.usage_in_bytes" % (agent.parent, sid)) as f:
                cg.append(int(f.read()) / 1024)
        out["init_kib"], out["cg_kib"] = statistics.mean(init_pss), statistics.mean(cg)
        out["fds"] = len(os.listdir("/proc/%d/fd" % agent.proc.pid))
        # Idle: nobody asks anything during the window (the background sampling's
        # whole 30 s cycle fits in it).
        reads0 = prom_value(agent, "sandpit_metrics_reads_total")
        c0, w0 = agent_cpu_s(agent.proc.pid), time.monotonic()
        time.sleep(window_s)
        c1, w1 = agent_cpu_s(agent.proc.pid), time.monotonic()
        reads1 = prom_value(agent, "sandpit_metrics_reads_total")
        out["idle_cpu_pct"] = 100 * (c1 - c0) / (w1 - w0)
        if reads0 is not None:
            out["reads_per_s"] = (reads1 - reads0) / (w1 - w0)
        # exec on one keep-alive connection, spread over sandboxes (a fixed sample).
        sample = ids[:: max(1, len(ids) // 10)][:10]
        ex = []
        for sid in sample:
            exec_raw(agent.sock, sid, 3)
            ex += exec_raw(agent.sock, sid, exec_runs // len(sample))
        out["exec"] = ex
        # The same while 10 of them have their metrics watched (1 s samples).
        for sid in sample:
            agent.call("GET", "/v1/sandboxes/%s/metrics" % sid)
        exw = []
        for sid in sample:
            exw += exec_raw(agent.sock, sid, exec_runs // len(sample))
        out["exec_watched"] = exw
        t = time.perf_counter()
        for sid in ids:
            st, _ = agent.call("DELETE", "/v1/sandboxes/" + sid)
            assert st == 204
        out["delete_s"] = time.perf_counter() - t
        ids = []
        settle(agent)
        out["teardown_s"] = time.perf_counter() - t
    finally:
        shutil.rmtree(bare_tmp, ignore_errors=True)
        for sid in ids:
            agent.call("DELETE", "/v1/sandboxes/" + sid)
        if ids:
            settle(agent)
        agent.stop()
        if ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return out


def density_rows(d):
    what = "%d idle sandboxes%s" % (d["reached"], ", --sandbox-cidr" if d["net"] else ", loopback-only")
    if d["reached"] < d["n"]:
        what += " (of %d asked: %s)" % (d["n"], d["why"][:160])
    rows = []
    if "exec" not in d:
        return [(what, "n/a", "n/a", d["why"])]
    rows.append((what + ": exec `true` round trip", *fmt(d["exec"]),
                 "%d runs over 10 of them; %s with 10 watched" % (len(d["exec"]), "/".join(fmt(d["exec_watched"])))))
    rows.append((what + ": idle agent CPU (% of a core)", "%.2f" % d["idle_cpu_pct"], "",
                 "utime+stime over the window; %.1f metric reads/s" % d.get("reads_per_s", -1)))
    rows.append((what + ": memory per sandbox (KiB)", "%.0f" % (d["agent_kib"] + d["init_kib"]), "",
                 "agent RSS %.1f MiB (+%.1f KiB each) + init PSS %.0f; cgroup %.0f; kernel %.0f; agent fds %d"
                 % (d["rss_mib"], d["agent_kib"], d["init_kib"], d["cg_kib"], d["kernel_kib"], d["fds"])))
    if d.get("bare_empty") and d.get("bare_full"):
        rows.append((what + ": create, first 20 beside last 20", *fmt(d["create_last"]),
                     "first 20: %s; bare `runc run` %s with none, %s with them (p50/p95, 5 runs);"
                     " node mounts %d then %d"
                     % ("/".join(fmt(d["create_first"])), "/".join(fmt(d["bare_empty"])),
                        "/".join(fmt(d["bare_full"])), d["mounts_empty"], d["mounts_full"])))
    rows.append((what + ": created, then deleted one by one (s)", "%.1f" % d["create_s"], "",
                 "deletes answered in %.2f s, all torn down after %.2f s"
                 % (d.get("delete_s", -1), d.get("teardown_s", -1))))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates-dir", required=True)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--exec-runs", type=int, default=300)
    ap.add_argument("--idle", type=int, default=20, help="sandboxes for the memory figure")
    ap.add_argument("--code-runs", type=int, default=300)
    ap.add_argument("--code-cold", type=int, default=10)
    ap.add_argument("--only-code", action="store_true", help="only the code interpreter rows")
    ap.add_argument("--only-delete", action="store_true", help="only the delete rows")
    ap.add_argument("--delete-many", type=int, default=100, help="sandboxes for the --only-delete batch row")
    ap.add_argument("--only-density", metavar="N[,N...]",
                    help="only the density rows: N idle sandboxes, loopback-only and with --sandbox-cidr")
    ap.add_argument("--density-net", choices=("both", "plain", "cidr"), default="both")
    ap.add_argument("--density-window", type=float, default=30.0, help="seconds of idle CPU measured")
    ap.add_argument("--sustained", type=int, default=100, help="creates in each sustained-rate run")
    ap.add_argument("--sustained-clients", default="1,2,4,8", metavar="N[,N...]",
                    help="concurrent clients of the sustained rows, cold and with the pool")
    ap.add_argument("--sustained-rounds", type=int, default=1,
                    help="interleaved rounds of the sustained rows (medians)")
    ap.add_argument("--sustained-burst", type=int, default=50, metavar="N",
                    help="pool size and claims of the burst row (0: none)")
    ap.add_argument("--only-sustained", action="store_true", help="only the sustained-rate rows")
    ap.add_argument("--only-create", action="store_true",
                    help="only cold create, warm pool claim and bare runc run")
    ap.add_argument("--userns", choices=("on", "both"), default="on",
                    help="with --only-create, both: cold creates also on an agent with --userns off")
    args = ap.parse_args()

    if args.only_density:
        rows = []
        for n in (int(x) for x in args.only_density.split(",")):
            for net in {"both": (False, True), "plain": (False,), "cidr": (True,)}[args.density_net]:
                d = bench_density(args.templates_dir, n, net, args.density_window, args.exec_runs)
                summary = {k: v for k, v in d.items() if not k.startswith("exec")}
                for k in ("exec", "exec_watched"):
                    if d.get(k):
                        summary[k + "_p50_p95"] = fmt(d[k])
                print(json.dumps(summary), file=sys.stderr)  # as each N ends
                rows += density_rows(d)
        return print_rows(rows)
    if args.only_sustained:
        agent, pooled = Agent(args.templates_dir), None
        try:
            pooled = Agent(args.templates_dir, ("--pool", "host=%d" % POOL_SIZE, "--capacity-cpu", "64",
                                                "--capacity-memory", "64Gi"))
            bench_create(agent, 3)
            bench_claim(pooled, 3)
            rows = sustained_rows(agent, pooled, args.sustained,
                                  [int(x) for x in args.sustained_clients.split(",")],
                                  args.sustained_rounds, args.sustained_burst, POOL_SIZE)
        finally:
            agent.stop()
            if pooled:
                pooled.stop()
        return print_rows(rows)
    tmp = tempfile.mkdtemp(prefix="sandpit-bench-bare-")
    agent = Agent(args.templates_dir)
    # The default shape's pool; room for it beside the cold creates on a small node.
    pooled = agent_off = None
    if args.only_create and args.userns == "both":
        agent_off = Agent(args.templates_dir, ("--userns", "off"))
    if not args.only_delete:
        pooled = Agent(args.templates_dir, ("--pool", "host=%d" % POOL_SIZE, "--capacity-cpu", "64",
                                            "--capacity-memory", "64Gi"))
    rows = []
    try:
        # Code interpreter: needs python3 and node in the template (default).
        tpl = "default" if os.path.isdir(os.path.join(args.templates_dir, "default")) else None
        for lang in ("python", "javascript") if not (args.only_create or args.only_delete) else ():
            if tpl is None:
                rows.append(("run_code `1+1` (%s)" % lang, "n/a", "n/a", "no default template"))
                continue
            warm, cold = bench_code(agent, tpl, lang, args.code_runs, args.code_cold)
            rows.append(("run_code `1+1` round trip, warm %s context" % lang, *fmt(warm),
                         "target p50 < 2 ms"))
            rows.append(("first run_code in a new sandbox (%s kernel start)" % lang, *fmt(cold),
                         "%d new sandboxes; sandbox create not included" % len(cold)))
        if args.only_code:
            return print_rows(rows)
        # Warm up caches for everyone alike.
        bench_create(agent, 3)
        if args.only_delete:
            _, deleted, torn_down = bench_create(agent, args.runs)
            rows = delete_rows(deleted, torn_down)
            answered, done = bench_delete_many(agent, args.delete_many)
            rows.append(("delete %d idle sandboxes one by one (s)" % args.delete_many,
                         "%.2f" % answered, "", "all torn down after %.2f s" % done))
            return print_rows(rows)
        bench_bare_run("runc", args.templates_dir, tmp, 3)

        bench_claim(pooled, 3)
        if agent_off:
            bench_create(agent_off, 3)

        # Cold creates and bare `runc run` interleaved one by one, so a
        # machine whose load changes meanwhile weighs on both alike.
        created, deleted, torn_down, runc_run, runc_err = [], [], [], [], None
        off_created, cpu, off_cpu, runc_cpu = [], [], [], []
        for _ in range(args.runs):
            c, d, td = bench_create(agent, 1, cpu)
            created += c
            deleted += d
            torn_down += td
            if agent_off:
                off_created += bench_create(agent_off, 1, off_cpu)[0]
            if runc_err is None:
                rr, runc_err = bench_bare_run("runc", args.templates_dir, tmp, 1, runc_cpu)
                runc_run += rr or []
        claimed = bench_claim(pooled, args.runs)
        crun_run, crun_err = bench_bare_run("crun", args.templates_dir, tmp, args.runs)
        mean = statistics.mean  # of CPU figures counted in clock ticks
        first = len(rows)
        rows.append(("create → ready (sandpit, host template)", *fmt(created),
                     "CPU %.1f ms a create + delete (agent, runc, init)" % mean(cpu)))
        if agent_off:
            rows.append(("create → ready, `--userns off`", *fmt(off_created),
                         "CPU %.1f ms a create + delete" % mean(off_cpu)))
        rows.append(("create → ready from a warm pool (claim)", *fmt(claimed),
                     "target p50 < 10 ms; %.2fx cold create" % (pct(claimed, 50) / pct(created, 50))))
        if runc_err is None:
            rows.append(("bare `runc run /bin/true`, same rootfs", *fmt(runc_run),
                         "CPU %.1f ms a run" % mean(runc_cpu)))
            ratio = lambda xs: "%.2fx runc run" % (pct(xs, 50) / pct(runc_run, 50))  # noqa: E731
            rows[first] = rows[first][:3] + (ratio(created) + "; " + rows[first][3],)
            if agent_off:
                rows[first + 1] = rows[first + 1][:3] + (ratio(off_created) + "; " + rows[first + 1][3],)
        else:
            rows.append(("bare `runc run /bin/true`", "n/a", "n/a", runc_err))
        if crun_run:
            rows.append(("bare `crun run /bin/true`, same rootfs", *fmt(crun_run), ""))
        else:
            rows.append(("bare `crun run /bin/true`", "n/a", "n/a", crun_err))
        rows += delete_rows(deleted, torn_down)
        # Sustained creation: creates/s against the number of clients, each
        # sandbox deleted as soon as it answered; cold and with the warm pool
        # interleaved, then a burst of claims from a large pool.
        rows += sustained_rows(agent, pooled, args.sustained,
                               [int(x) for x in args.sustained_clients.split(",")],
                               args.sustained_rounds, args.sustained_burst, POOL_SIZE)
        pooled.stop()  # its waiting sandboxes stay out of the figures below
        pooled = None
        if args.only_create:
            return print_rows(rows)

        st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host", "timeout": 600})
        assert st == 201, sb
        exec_raw(agent.sock, sb["id"], 10)
        ex = exec_raw(agent.sock, sb["id"], args.exec_runs)
        agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
        rexec, rexec_err = bench_runc_exec(args.templates_dir, tmp, max(20, args.runs))
        spawn = bench_host_spawn(args.exec_runs)
        note = "%.2fx host spawn" % (pct(ex, 50) / pct(spawn, 50))
        if rexec:
            note += "; %.1fx faster than runc exec" % (pct(rexec, 50) / pct(ex, 50))
        rows.append(("exec `true` round trip (sandpit)", *fmt(ex), note))
        if rexec:
            rows.append(("`runc exec true`", *fmt(rexec), ""))
        else:
            rows.append(("`runc exec true`", "n/a", "n/a", rexec_err))
        rows.append(("host posix_spawn of /usr/bin/true + wait", *fmt(spawn), "the floor"))

        rows.extend(bench_files(agent, args.runs))
        mp = bench_metrics_pause(agent, args.exec_runs)
        rows.append(("GET /v1/sandboxes/ID/metrics (cgroup + statvfs read)", *fmt(mp["metrics"]),
                     "%.2fx GET /healthz" % (pct(mp["metrics"], 50) / pct(mp["healthz"], 50))))
        rows.append(("GET /healthz", *fmt(mp["healthz"]), "the API floor"))
        rows.append(("pause + resume round trip (cgroup freezer)", *fmt(mp["pause"]), ""))

        agent_kib, init_kib, cg_kib, kernel_kib_ = bench_memory(agent, args.idle, agent.parent)
        rows.append(("memory per idle sandbox: agent RSS growth + init PSS (KiB)",
                     "%.0f" % (agent_kib + init_kib), "",
                     "agent %.0f + init %.0f; mean of %d" % (agent_kib, init_kib, args.idle)))
        rows.append(("memory per idle sandbox: its memory cgroup's usage (KiB)", "%.0f" % cg_kib,
                     "", "what the sandbox is charged: init's pages, tmpfs, kernel memory"))
        rows.append(("memory per idle sandbox: kernel Slab+PageTables+KernelStack+Shmem (KiB)",
                     "%.0f" % kernel_kib_, "", "system-wide delta / sandboxes: mounts, cgroups, runc"))
        rows += bench_net.run(args.templates_dir, args.runs, pct, fmt)
    finally:
        agent.stop()
        if agent_off:
            agent_off.stop()
        if pooled:
            pooled.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print_rows(rows)


def delete_rows(deleted, torn_down):
    return [("delete (sandpit): the answer, sandbox dead", *fmt(deleted), "target p50 < 10 ms"),
            ("delete → background teardown ended", *fmt(torn_down),
             "runc state, cgroup, unmount, state dir; polled on /v1/info")]


def print_rows(rows):
    print("| what | p50 (ms) | p95 (ms) | note |")
    print("|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)


if __name__ == "__main__":
    sys.exit(main())
