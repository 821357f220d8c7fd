"""Sandbox networking: egress policies, live updates, the port proxy, leases
across restarts, and nothing left behind (docs/networking.md).

The test network is built from our own namespaces only, with addresses from
198.18.0.0/15 (plus 169.254.169.254 on a namespace of ours, as a live
metadata target):

  sandboxes (198.18.64.0/24) ── veths ── node netns ── veth ── outside netns
                                         198.18.100.1          198.18.100.2 (servers, DNS)
                                         (the agent runs here) 198.18.101.2, 169.254.169.254,
                                                               198.19.200.1 (a --blocked-cidr)

The agent under test runs inside the node netns (nsenter --net), so the
host's own interfaces and nftables ruleset are never touched. Every target
the sandboxes probe also answers a probe from the node itself, so a blocked
probe is the policy at work, not a dead target.
"""

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO, assert_error, rand_suffix, start_agent, stop_agent, wait_for
from netlab import lab_fixture, net  # noqa: F401

HERE = Path(__file__).resolve().parent
CIDR = "198.18.64.0/24"
GATEWAY = "198.18.64.1"
NODE = "198.18.100.1"
OUTSIDE = "198.18.100.2"
OUTSIDE2 = "198.18.101.2"
METADATA = "169.254.169.254"
BLOCKED = "198.19.200.1"
BLOCKED_CIDR = "198.19.200.0/24"
AGENT_PORT = 7443

# Outside: TCP echo on 7001 and 7002, UDP echo on 7003, HTTP on 8080, and a
# DNS responder on 53 that answers every A question with OUTSIDE.
SERVERS = r'''
import http.server, socket, socketserver, sys, threading
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"echo:" + self.request.recv(100))
class TCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
seen = []
def udp_sink():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7004))
    while True:
        seen.append(s.recvfrom(512)[0].decode("ascii", "replace"))
class Seen(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(",".join(seen).encode())
threading.Thread(target=TCP(("0.0.0.0", 7005), Seen).serve_forever, daemon=True).start()
def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7003))
    while True:
        d, a = s.recvfrom(512); s.sendto(b"echo:" + d, a)
def dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 53))
    while True:
        q, a = s.recvfrom(512)
        end = 12
        while q[end]: end += q[end] + 1
        end += 5
        s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end]
                 + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes(int(x) for x in sys.argv[1].split(".")), a)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b"outside page\n"
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
for p in (7001, 7002):
    threading.Thread(target=TCP(("0.0.0.0", p), Echo).serve_forever, daemon=True).start()
for f in (udp_echo, dns, udp_sink):
    threading.Thread(target=f, daemon=True).start()
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H)
print("ready", flush=True)
srv.serve_forever()
'''

# Node: a TCP echo on every node address, so reaching the node would succeed if unblocked.
NODE_SERVER = r'''
import socketserver
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"echo:" + self.request.recv(100))
class TCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
s = TCP(("0.0.0.0", 7001), Echo)
print("ready", flush=True)
s.serve_forever()
'''

# Runs inside a sandbox (or the node): probes targets in parallel, prints JSON.
# "tcp:H:P" connects and expects the echo, "udp:H:P" expects a UDP echo,
# "dns:NAME" resolves through /etc/resolv.conf.
PROBE = r'''
import json, socket, sys, threading
res = {}
def probe(t):
    kind, _, rest = t.partition(":")
    try:
        if kind == "dns":
            res[t] = socket.gethostbyname(rest)
            return
        h, p = rest.rsplit(":", 1)
        if kind == "tcp":
            s = socket.create_connection((h, int(p)), timeout=1.5)
            s.settimeout(1.5); s.sendall(b"x"); d = s.recv(100)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
            s.sendto(b"x", (h, int(p))); d = s.recv(100)
        res[t] = d == b"echo:x"
    except Exception:
        res[t] = False
ts = [threading.Thread(target=probe, args=(t,)) for t in sys.argv[1:]]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(res))
'''

WS_ECHO = r'''
import base64, hashlib, socket, struct, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(4)
open("/tmp/ws-listening", "w").close()
while True:
    c, _ = srv.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(4096)
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    f = c.makefile("rb")
    while True:
        h = f.read(2)
        if len(h) < 2: break
        n = h[1] & 0x7f
        mask = f.read(4)
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(n)))
        if h[0] & 0x0f == 8: break
        c.sendall(bytes([0x81, len(data) + 5]) + b"echo:" + data)
    c.close()
'''


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    return r


class Lab:
    """The node and outside namespaces, their servers, and a networked agent
    whose DNS upstream is `dns`."""

    dns = OUTSIDE

    def __init__(self, templates_dir):
        self.suffix = rand_suffix(6)
        self.node = f"sp4n-{self.suffix}"
        self.outside = f"sp4o-{self.suffix}"
        self.procs = []
        self.templates = Path(f"/tmp/sandpit-it-net-templates-{self.suffix}")
        self.agent = None
        self.templates_dir = templates_dir

    def build(self):
        n, o, s = self.node, self.outside, self.suffix
        sh("ip", "netns", "add", n)
        sh("ip", "netns", "add", o)
        sh("ip", "link", "add", f"v4n-{s}", "netns", n, "type", "veth", "peer", "name", f"v4o-{s}", "netns", o)
        sh("ip", "-n", n, "addr", "add", f"{NODE}/24", "dev", f"v4n-{s}")
        sh("ip", "-n", o, "addr", "add", f"{OUTSIDE}/24", "dev", f"v4o-{s}")
        for extra in (OUTSIDE2, METADATA, BLOCKED):
            sh("ip", "-n", o, "addr", "add", f"{extra}/32", "dev", f"v4o-{s}")
        for ns, dev in ((n, f"v4n-{s}"), (o, f"v4o-{s}")):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        for route in ("198.18.101.0/24", f"{METADATA}/32", BLOCKED_CIDR):
            sh("ip", "-n", n, "route", "add", route, "via", OUTSIDE)
        self.start_server(o, SERVERS, OUTSIDE)
        self.start_server(n, NODE_SERVER)
        # Templates: the session's host template, and one whose bind source is
        # missing, so runc fails after the network is set up.
        (self.templates / "badbind" / "rootfs").mkdir(parents=True)
        os.symlink(self.templates_dir / "host", self.templates / "host")
        (self.templates / "badbind" / "template.json").write_text(
            json.dumps({"name": "badbind", "binds": ["/usr", f"/nonexistent-sandpit-{s}"]}))
        for d in ("usr", "etc", "tmp", "proc", "dev", "sys"):
            (self.templates / "badbind" / "rootfs" / d).mkdir()
        token = self.templates / "token"
        token.write_text("net-test-token-0123456789\n")
        self.agent = start_agent(
            f"net-{s}", self.templates, netns=n, listen=f"0.0.0.0:{AGENT_PORT}", token_file=token,
            net_table=f"sandpit-{s}",
            extra_args=["--sandbox-cidr", CIDR, "--blocked-cidr", BLOCKED_CIDR, "--dns", self.dns,
                        "--net-table", f"sandpit-{s}"])

    def start_server(self, ns, code, *args):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        assert p.stdout.readline().strip() == b"ready"

    def destroy(self):
        if self.agent:
            stop_agent(self.agent)
        for p in self.procs:
            p.kill()
            p.wait(10)
        for ns in (self.node, self.outside):
            sh("ip", "netns", "del", ns, check=False)
        sh("rm", "-rf", "--one-file-system", str(self.templates), check=False)

    def probe_from_node(self, *targets):
        r = sh("ip", "netns", "exec", self.node, sys.executable, "-c", PROBE, *targets)
        return json.loads(r.stdout)


lab = lab_fixture(Lab)


def probe(client, sid, *targets):
    r = client.exec(sid, cmd=["python3", "-c", PROBE, *targets], http_timeout=60)
    assert r.status == 200 and r.exit_code == 0, r
    return json.loads(r.stdout)


def create(client, **spec):
    spec.setdefault("template", "host")
    return client.create(**spec)


# ------------------------------------------------------------------ policies


def test_targets_are_live_from_the_node(lab):
    """Positive control: every target the sandboxes must not reach answers the node."""
    got = lab.probe_from_node(f"tcp:{OUTSIDE}:7001", f"tcp:{METADATA}:7001", f"tcp:{BLOCKED}:7001",
                              f"tcp:{NODE}:7001", f"tcp:{OUTSIDE2}:7002")
    assert all(got.values()), got


def test_deny_reaches_nothing(net):
    sb = create(net)
    assert sb["network"]["egress"] == "deny"
    assert sb["network"]["ip"].startswith("198.18.64.")
    got = probe(net, sb["id"], f"tcp:{OUTSIDE}:7001", f"udp:{OUTSIDE}:7003", f"tcp:{NODE}:7001",
                f"tcp:{GATEWAY}:7001", f"tcp:{METADATA}:7001", "dns:example.test")
    assert not any(got.values()), got
    # Loopback still works.
    out = net.sh(sb["id"], "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen(); "
                 "c=socket.create_connection(s.getsockname()); print(\"lo ok\")'")
    assert out.strip() == "lo ok"


def test_resolv_conf_points_at_dns(net):
    sb = create(net)
    assert net.sh(sb["id"], "cat /etc/resolv.conf").split() == ["nameserver", OUTSIDE]


def test_allowlist_reaches_exactly_the_listed(net):
    sb = create(net, network={"egress": "allowlist",
                              "allow": [{"cidr": f"{OUTSIDE}/32", "ports": [7001], "protocol": "tcp"}]})
    got = probe(net, sb["id"], f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002", f"udp:{OUTSIDE}:7003",
                f"tcp:{OUTSIDE2}:7001", f"tcp:{METADATA}:7001", f"tcp:{NODE}:7001", "dns:example.test")
    assert got == {f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False, f"udp:{OUTSIDE}:7003": False,
                   f"tcp:{OUTSIDE2}:7001": False, f"tcp:{METADATA}:7001": False, f"tcp:{NODE}:7001": False,
                   "dns:example.test": OUTSIDE}, got


def test_allowlist_cannot_open_always_blocked(net):
    """Listing a blocked range does not open it."""
    sb = create(net, network={"egress": "allowlist", "allow": [{"cidr": "169.254.0.0/16"}, {"cidr": BLOCKED_CIDR},
                                                                {"cidr": CIDR}, {"cidr": f"{NODE}/32"}]})
    got = probe(net, sb["id"], f"tcp:{METADATA}:7001", f"tcp:{BLOCKED}:7001", f"tcp:{GATEWAY}:7001",
                f"tcp:{NODE}:7001")
    assert not any(got.values()), got


def test_allow_reaches_outside_but_never_the_blocked(lab, net):
    a = create(net, network={"egress": "allow"})
    b = create(net, network={"egress": "allow"})
    # A live server in sandbox b, reachable from the node (positive control).
    r = net.exec(b["id"], cmd=["python3", "-c", NODE_SERVER.replace('"0.0.0.0", 7001', '"0.0.0.0", 9000')],
                 background=True)
    assert r.status == 201 or r.status == 200, r
    wait_for(lambda: lab.probe_from_node(f"tcp:{b['network']['ip']}:9000")[f"tcp:{b['network']['ip']}:9000"],
             10, what="server in sandbox b")
    got = probe(net, a["id"], f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE2}:7002", f"udp:{OUTSIDE}:7003",
                "dns:example.test", f"tcp:{NODE}:7001", f"tcp:{NODE}:{AGENT_PORT}", f"tcp:{GATEWAY}:7001",
                f"tcp:{GATEWAY}:{AGENT_PORT}", f"tcp:{METADATA}:7001", f"tcp:{BLOCKED}:7001",
                f"tcp:{b['network']['ip']}:9000")
    assert got == {f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE2}:7002": True, f"udp:{OUTSIDE}:7003": True,
                   "dns:example.test": OUTSIDE, f"tcp:{NODE}:7001": False, f"tcp:{NODE}:{AGENT_PORT}": False,
                   f"tcp:{GATEWAY}:7001": False, f"tcp:{GATEWAY}:{AGENT_PORT}": False,
                   f"tcp:{METADATA}:7001": False, f"tcp:{BLOCKED}:7001": False,
                   f"tcp:{b['network']['ip']}:9000": False}, got


def test_allow_with_deny_list(net):
    sb = create(net, network={"egress": "allow", "deny": [{"cidr": f"{OUTSIDE}/32", "ports": [7002]},
                                                          {"cidr": "198.18.101.0/24"}]})
    got = probe(net, sb["id"], f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002", f"tcp:{OUTSIDE2}:7001")
    assert got == {f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False, f"tcp:{OUTSIDE2}:7001": False}, got


def test_outbound_nat(lab, net):
    """The outside sees the node's address, never the sandbox's."""
    sb = create(net, network={"egress": "allow"})
    code = ("import socket; s=socket.create_connection(('%s', 8080)); "
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(100).split()[1].decode())" % OUTSIDE)
    assert net.sh(sb["id"], f'python3 -c "{code}"').strip() == "200"
    r = sh("ip", "netns", "exec", lab.outside, "ss", "-tn", "state", "time-wait")
    assert NODE in r.stdout and sb["network"]["ip"] not in r.stdout, r.stdout


def test_policy_update_is_live(net):
    sb = create(net)
    sid = sb["id"]
    assert probe(net, sid, f"tcp:{OUTSIDE}:7001") == {f"tcp:{OUTSIDE}:7001": False}
    r = net.request("PUT", f"/v1/sandboxes/{sid}/network",
                    body={"egress": "allowlist", "allow": [{"cidr": f"{OUTSIDE}/32", "ports": [7001]}]})
    assert r.status == 200, r
    assert r.json()["network"]["egress"] == "allowlist"
    assert probe(net, sid, f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002") == {
        f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False}
    r = net.post(f"/v1/sandboxes/{sid}/network", {"egress": "deny"})
    assert r.status == 200, r
    assert probe(net, sid, f"tcp:{OUTSIDE}:7001") == {f"tcp:{OUTSIDE}:7001": False}
    r = net.get(f"/v1/sandboxes/{sid}/network")
    assert r.status == 200 and r.json()["egress"] == "deny" and r.json()["ip"] == sb["network"]["ip"], r


def test_pool_claim_gets_the_callers_policy(lab, net):
    """A sandbox claimed from a warm pool (made with deny, its veth and lease
    ready) gets the caller's policy at the claim (docs/agent-api.md#warm-pools)."""
    shape = {"template": "host", "cpu": 0.25, "memory": 128 << 20}
    r = net.request("PUT", "/v1/pools/netpool", body=dict(shape, size=1))
    assert r.status == 200, r
    try:
        wait_for(lambda: net.get("/v1/pools/netpool").json()["ready"] == 1, 60, what="the pool ready")
        [name] = net.get("/v1/pools/netpool").json()["sandboxes"]
        sb = create(net, **shape, network={"egress": "allowlist", "allow": [{"cidr": f"{OUTSIDE}/32", "ports": [7001]}]})
        assert net.get("/v1/pools/netpool").json()["claims"] == 1
        # Nothing inside tells the sandbox its internal name (the resolv.conf
        # bind under --dns, the code sockets' bind, the overlay's options).
        assert name != sb["id"] and name in lab.agent.sandbox_dirs()
        seen = {path: net.sh(sb["id"], f"cat {path}") for path in ("/proc/self/mountinfo", "/proc/self/mounts")}
        assert "nameserver" in net.sh(sb["id"], "cat /etc/resolv.conf")
        for path, text in seen.items():
            assert name not in text, f"{path} names the pooled sandbox {name}:\n{text}"
        assert sb["network"]["egress"] == "allowlist" and sb["network"]["ip"].startswith("198.18.64."), sb
        assert probe(net, sb["id"], f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002", f"tcp:{NODE}:7001") == {
            f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False, f"tcp:{NODE}:7001": False}
    finally:
        assert net.delete("/v1/pools/netpool").status == 204
        # The waiting one goes in the background; the claimed one is the leak check's.
        wait_for(lambda: len(lab.agent.sandbox_dirs()) == len(net.list_ids()), 60,
                 what="the pool's waiting sandbox removed")


def test_bad_policies_are_400(net):
    bad = [{"egress": "open"}, {"egress": "allowlist", "allow": [{"cidr": "198.18.100.2/24"}]},
           {"egress": "allowlist", "allow": [{"cidr": "198.18.100.0/24", "ports": [0]}]},
           {"egress": "allowlist", "allow": [{"cidr": "198.18.100.0/24", "protocol": "icmp"}]},
           {"egress": "allow", "allow": [{"cidr": "198.18.100.0/24"}]},
           {"egress": "allowlist", "allow": [{"cidr": "198.18.100.0/24", "extra": 1}]},
           {"egress": "deny", "deny": []}, "allow"]
    for body in bad:
        assert_error(net.post("/v1/sandboxes", {"template": "host", "network": body}), 400)
    sb = create(net)
    for body in bad[:-1]:
        assert_error(net.request("PUT", f"/v1/sandboxes/{sb['id']}/network", body=body), 400)
    assert_error(net.request("PUT", "/v1/sandboxes/nosuchsandbox/network", body={"egress": "deny"}), 404)
    assert_error(net.request("DELETE", f"/v1/sandboxes/{sb['id']}/network"), 405)


def test_no_sandbox_cidr_keeps_loopback_only(client):
    """The session agent has no --sandbox-cidr: deny only, and a clear 400."""
    body = assert_error(client.post("/v1/sandboxes", {"template": "host", "network": {"egress": "allow"}}), 400)
    assert "--sandbox-cidr" in body["message"]
    sb = client.create(template="host")
    assert sb["network"] == {"egress": "deny"}
    assert client.sh(sb["id"], "cat /proc/net/dev | tail -n +3 | cut -d: -f1").split() == ["lo"]
    assert_error(client.request("PUT", f"/v1/sandboxes/{sb['id']}/network", body={"egress": "allow"}), 400)
    assert client.request("PUT", f"/v1/sandboxes/{sb['id']}/network", body={"egress": "deny"}).status == 200


def test_spoofed_sources_are_dropped(lab, net):
    """Root in the sandbox binds foreign source addresses (IP_FREEBIND needs no
    capability) and sends UDP out under allow: only the genuine packet arrives.
    (The kernel already refuses to route a foreign source without IP_TRANSPARENT,
    which needs CAP_NET_ADMIN; the chain's source check is the second layer.)"""
    sb = create(net, network={"egress": "allow"})
    tag = rand_suffix()
    code = f"""
import socket
for src, msg in (("198.18.64.250", "spoof-cidr-{tag}"), ("10.9.8.7", "spoof-out-{tag}"), (None, "real-{tag}")):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if src:
        s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
        s.bind((src, 0))
    try:
        s.sendto(msg.encode(), ("{OUTSIDE}", 7004))
    except OSError:
        assert src
print("sent")
"""
    assert net.sh(sb["id"], f"python3 -c '{code}'", user="root").strip() == "sent"

    def seen():
        r = sh("ip", "netns", "exec", lab.node, sys.executable, "-c",
               f"import socket; s=socket.create_connection(('{OUTSIDE}', 7005)); print(s.recv(65536).decode())")
        return r.stdout.strip().split(",")

    wait_for(lambda: f"real-{tag}" in seen(), 10, what="the genuine datagram")
    assert not [m for m in seen() if m.startswith("spoof-") and m.endswith(tag)], seen()


def test_sandbox_root_cannot_change_its_network(net):
    sb = create(net)
    for cmd in ("ip addr add 198.18.64.200/32 dev eth0", "ip link set eth0 down", "ip route del default"):
        r = net.exec(sb["id"], shell=cmd, user="root")
        assert r.status == 200 and r.exit_code != 0, (cmd, r)
    assert "198.18.64.200" not in net.sh(sb["id"], "ip -4 addr")


def test_concurrent_creates_get_distinct_leases(lab, net):
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda _: create(net, network={"egress": "allow"}), range(6)))
    ips = [g["network"]["ip"] for g in got]
    assert len(set(ips)) == 6, ips
    assert sorted(veths(lab)) == sorted("spx%08x" % int.from_bytes(socket.inet_aton(ip), "big") for ip in ips)
    for g in got:
        assert net.delete(f"/v1/sandboxes/{g['id']}").status == 204
    assert lab.agent.network_leftovers() == []


# ------------------------------------------------------------------ port proxy


def start_web(client, sid, port, text):
    client.sh(sid, f"mkdir -p /tmp/www && echo '{text}' > /tmp/www/index.html")
    r = client.exec(sid, shell=f"cd /tmp/www && exec python3 -m http.server {port} --bind 127.0.0.1",
                    background=True)
    assert r.status in (200, 201), r
    wait_for(lambda: client.get(f"/v1/sandboxes/{sid}/ports/{port}/").status == 200, 15, what="web server")


def test_port_proxy_serves_a_page_under_deny(net):
    sb = create(net)  # deny: the proxy reaches in through the netns, not the network
    start_web(net, sb["id"], 8000, "hello from the sandbox")
    r = net.get(f"/v1/sandboxes/{sb['id']}/ports/8000/index.html?x=1")
    assert r.status == 200 and r.body == b"hello from the sandbox\n", r
    assert r.headers["Content-Type"].startswith("text/html")
    assert net.get(f"/v1/sandboxes/{sb['id']}/ports/8000/missing.html").status == 404
    assert_error(net.get(f"/v1/sandboxes/{sb['id']}/ports/8001/"), 502)
    for bad in ("0", "65536", "http", "080"):
        assert_error(net.get(f"/v1/sandboxes/{sb['id']}/ports/{bad}/"), 400)
    assert_error(net.get("/v1/sandboxes/nosuchsandbox/ports/8000/"), 404)


def test_port_proxy_streams_large_responses(lab, net):
    """A 128 MiB download passes through without the agent holding it."""
    sb = create(net, memory="1Gi", disk="512Mi")
    net.sh(sb["id"], "mkdir -p /tmp/www && head -c 134217728 /dev/urandom > /tmp/www/big && "
           "sha256sum /tmp/www/big | cut -d' ' -f1 > /tmp/www/big.sha")
    start_web(net, sb["id"], 8000, "x")
    want = net.sh(sb["id"], "cat /tmp/www/big.sha").strip()

    def rss_kib():
        with open(f"/proc/{lab.agent.proc.pid}/status") as f:
            return int([ln for ln in f if ln.startswith("VmRSS:")][0].split()[1])

    before = rss_kib()
    conn = http.client.HTTPConnection("localhost", timeout=120)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(lab.agent.socket))
    conn.request("GET", f"/v1/sandboxes/{sb['id']}/ports/8000/big", headers={"Host": "x"})
    resp = conn.getresponse()
    assert resp.status == 200
    h, peak, total = hashlib.sha256(), before, 0
    while chunk := resp.read(1 << 20):
        h.update(chunk)
        total += len(chunk)
        peak = max(peak, rss_kib())
    conn.close()
    assert total == 134217728 and h.hexdigest() == want
    assert peak - before < 32 * 1024, f"agent RSS grew by {peak - before} KiB during the download"


def test_port_proxy_without_sandbox_networking(client):
    sb = client.create(template="host")
    start_web(client, sb["id"], 8000, "loopback only")
    assert client.get(f"/v1/sandboxes/{sb['id']}/ports/8000/").body == b"loopback only\n"


def test_port_proxy_websocket_echo(lab, net):
    sb = create(net)
    r = net.exec(sb["id"], cmd=["python3", "-c", WS_ECHO, "8765"], background=True)
    assert r.status in (200, 201), r
    wait_for(lambda: net.exec(sb["id"], cmd=["test", "-e", "/tmp/ws-listening"]).exit_code == 0, 15,
             what="the echo server to listen")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(lab.agent.socket))
    s.sendall(f"GET /v1/sandboxes/{sb['id']}/ports/8765/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, head  # RFC 6455's example accept value
    for msg in (b"hello", b"again"):
        mask = b"\x01\x02\x03\x04"
        s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
        frame = s.recv(100)
        assert frame == bytes([0x81, len(msg) + 5]) + b"echo:" + msg, frame
    s.close()


# ------------------------------------------------------------------ nothing left behind


def lease_of(lab, sid):
    p = lab.agent.state_dir / "network" / "leases.json"
    return json.loads(p.read_text()).get(sid) if p.exists() else None


def veths(lab):
    out = lab.agent.in_node("ip", "-o", "link").stdout
    return [ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines() if "spx" in ln]


def test_delete_releases_everything(lab, net):
    sb = create(net, network={"egress": "allow"})
    assert lease_of(lab, sb["id"]) == sb["network"]["ip"]
    assert len(veths(lab)) == 1
    assert (lab.agent.state_dir / "sandboxes" / sb["id"] / "netns").exists()
    assert net.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    assert lab.agent.network_leftovers() == []
    assert veths(lab) == []


def test_failed_create_leaves_nothing(lab, net):
    r = net.post("/v1/sandboxes", {"template": "badbind", "network": {"egress": "allow"}})
    assert r.status == 500, r
    assert lab.agent.network_leftovers() == []
    assert lab.agent.leftovers() == []


def test_restart_keeps_leases_and_rules(lab, net):
    a = lab.agent
    sb = create(net, network={"egress": "allowlist", "allow": [{"cidr": f"{OUTSIDE}/32", "ports": [7001]}]})
    gone = create(net, network={"egress": "allow"})
    a.kill9()
    # One sandbox dies while the agent is away: it cannot be re-adopted.
    a.runc("kill", gone["id"], "KILL")
    wait_for(lambda: "stopped" in a.runc("state", gone["id"]).stdout, 10, what="container stopped")
    a.start()
    r = net.get(f"/v1/sandboxes/{sb['id']}")
    assert r.status == 200 and r.json()["network"]["ip"] == sb["network"]["ip"], r
    assert net.get(f"/v1/sandboxes/{gone['id']}").status == 404
    assert lease_of(lab, sb["id"]) == sb["network"]["ip"] and lease_of(lab, gone["id"]) is None
    assert veths(lab) == ["spx%08x" % int.from_bytes(socket.inet_aton(sb["network"]["ip"]), "big")]
    table = json.loads(a.in_node("nft", "-j", "list", "table", "ip", a.net_table).stdout)["nftables"]
    chains = sorted(o["chain"]["name"] for o in table if "chain" in o and o["chain"]["name"].startswith("sbx-"))
    assert chains == [f"sbx-{sb['id']}"], chains
    assert not (a.state_dir / "sandboxes" / gone["id"]).exists()
    assert probe(net, sb["id"], f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002") == {
        f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False}
    # A new sandbox does not get the kept lease.
    c = create(net)
    assert c["network"]["ip"] != sb["network"]["ip"]


def test_cli_create_with_egress_rules(lab, net):
    """`sandpit create --allow` sends an allowlist the agent enforces; bad rules are one line."""
    cli = [str(REPO / "build" / "bin" / "sandpit"), "--server", f"unix://{lab.agent.socket}"]
    r = subprocess.run([*cli, "create", "--template", "host", "--json", "--allow", f"{OUTSIDE}/32:7001/tcp"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    sb = json.loads(r.stdout)
    try:
        assert sb["network"]["egress"] == "allowlist"
        # the agent shows a /32 as the bare address
        assert sb["network"]["allow"] == [{"cidr": OUTSIDE, "ports": [7001], "protocol": "tcp"}]
        got = probe(net, sb["id"], f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002")
        assert got == {f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False}, got
    finally:
        assert net.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    before = set(net.list_ids())
    r = subprocess.run([*cli, "create", "--template", "host", "--allow", f"{OUTSIDE}:99999"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "--allow" in r.stderr, r.stderr
    r = subprocess.run([*cli, "create", "--template", "host", "--allow", "not-a-cidr:80"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert set(net.list_ids()) == before
