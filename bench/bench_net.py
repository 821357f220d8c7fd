"""The cost of sandbox networking, for `make bench` (bench.py adds these rows).

Builds its own two network namespaces (node and outside, 198.18.0.0/15
addresses only) and runs two agents inside the node namespace, one with
--sandbox-cidr (netns + veth + nftables per sandbox) and one without
(runc's loopback-only netns), so both creates pay the same costs otherwise.
Measures create → ready for both, and TCP throughput sandbox → outside beside
node → outside (the node's own path, no veth, no NAT).
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")
NODE, OUTSIDE, CIDR = "198.18.100.1", "198.18.100.2", "198.18.64.0/24"
SINK_PORT = 5201
SEND_MIB = 256

SINK = r'''
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", %d)); srv.listen(8)
print("ready", flush=True)
def drain(c):
    while c.recv(1 << 20): pass
    c.close()
while True:
    c, _ = srv.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
''' % SINK_PORT

SEND = r'''
import socket, sys, time
buf = b"x" * (1 << 20); n = int(sys.argv[2])
s = socket.create_connection((sys.argv[1], %d))
t = time.perf_counter()
for _ in range(n): s.sendall(buf)
s.shutdown(socket.SHUT_WR); s.recv(1)
print(n / (time.perf_counter() - t))
''' % SINK_PORT


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, stdin=subprocess.DEVNULL)


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


class NetAgent:
    def __init__(self, netns, templates, name, extra):
        self.tmp = tempfile.mkdtemp(prefix="sandpit-bench-net-")
        os.chmod(self.tmp, 0o711)  # with user namespaces sandboxes search their way in
        self.sock = os.path.join(self.tmp, "agent.sock")
        self.parent = "sandpit-bench-%s-%d" % (name, os.getpid())
        self.log = open(os.path.join(self.tmp, "agent.log"), "w")
        self.proc = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + netns, os.path.join(BIN, "sandpit-agent"), "--standalone",
             "--socket", self.sock, "--state-dir", os.path.join(self.tmp, "state"), "--templates-dir", templates,
             "--cgroup-parent", self.parent, "--log-level", "warning"] + extra, stderr=self.log)
        for _ in range(250):
            if os.path.exists(self.sock):
                break
            time.sleep(0.02)
        self.conn = UnixConn(self.sock)

    def call(self, method, path, body=None):
        self.conn.request(method, path, json.dumps(body) if body is not None else None)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data and r.getheader("Content-Type", "").startswith("application/json")
                          else data)

    def exec_out(self, sid, cmd):
        st, body = self.call("POST", "/v1/sandboxes/%s/exec" % sid, {"cmd": cmd, "timeout": 120})
        assert st == 200, body
        out = b""
        for line in body.splitlines():
            ev = json.loads(line)
            if ev.get("type") == "stdout":
                out += ev["data"].encode()
            if ev.get("type") == "exit":
                assert ev["exit_code"] == 0, body
        return out.decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for ctl in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", ctl, self.parent)
            if os.path.isdir(p):
                try:
                    os.rmdir(p)
                except OSError:
                    pass


def creates(agent, n, body):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        st, sb = agent.call("POST", "/v1/sandboxes", body)
        out.append((time.perf_counter() - t) * 1000)
        assert st == 201, sb
        st, _ = agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
        assert st == 204
    return out


def run(templates, runs, pct, fmt):
    """Rows for bench.py's table."""
    s = "".join(random.choice(string.ascii_lowercase) for _ in range(6))
    node, outside = "spbn-" + s, "spbo-" + s
    procs, agents, rows = [], [], []
    try:
        sh("ip", "netns", "add", node)
        sh("ip", "netns", "add", outside)
        sh("ip", "link", "add", "vbn-" + s, "netns", node, "type", "veth", "peer", "name", "vbo-" + s,
           "netns", outside)
        for ns, dev, addr in ((node, "vbn-" + s, NODE), (outside, "vbo-" + s, OUTSIDE)):
            sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sink = subprocess.Popen(["ip", "netns", "exec", outside, sys.executable, "-c", SINK],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        procs.append(sink)
        assert sink.stdout.readline().strip() == b"ready"
        plain = NetAgent(node, templates, "plain", [])
        agents.append(plain)
        net = NetAgent(node, templates, "net", ["--sandbox-cidr", CIDR, "--net-table", "sandpit-bench-" + s])
        agents.append(net)
        creates(plain, 3, {"template": "host"})
        creates(net, 3, {"template": "host"})
        without, with_ = [], []
        for _ in range(runs):  # interleaved, so both see the same machine
            without += creates(plain, 1, {"template": "host"})
            with_ += creates(net, 1, {"template": "host"})
        rows.append(("create → ready, loopback-only netns (runc's)", *fmt(without), ""))
        rows.append(("create → ready, netns + veth + nft chain (--sandbox-cidr)", *fmt(with_),
                     "+%.2f ms p50" % (pct(with_, 50) - pct(without, 50))))

        st, sb = net.call("POST", "/v1/sandboxes", {"template": "host", "network": {"egress": "allow"}})
        assert st == 201, sb
        from_sbx, from_node = [], []
        for _ in range(3):
            from_sbx.append(float(net.exec_out(sb["id"], ["python3", "-c", SEND, OUTSIDE, str(SEND_MIB)])))
            r = subprocess.run(["ip", "netns", "exec", node, sys.executable, "-c", SEND, OUTSIDE, str(SEND_MIB)],
                               check=True, capture_output=True, stdin=subprocess.DEVNULL)
            from_node.append(float(r.stdout))
        net.call("DELETE", "/v1/sandboxes/" + sb["id"])
        rows.append(("TCP throughput sandbox → outside (veth, nft, NAT), MiB/s", "%.0f" % pct(from_sbx, 50), "",
                     "%.0f%% of the node's; median of 3 × %d MiB" % (100 * pct(from_sbx, 50) / pct(from_node, 50),
                                                                    SEND_MIB)))
        rows.append(("TCP throughput node → outside, MiB/s", "%.0f" % pct(from_node, 50), "", "baseline"))
    except Exception as e:  # the rest of the bench still prints
        rows.append(("sandbox networking", "n/a", "n/a", "failed: %s" % str(e).splitlines()[0][:120]))
    finally:
        for a in agents:
            a.stop()
        for p in procs:
            p.kill()
            p.wait()
        for ns in (node, outside):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return rows
