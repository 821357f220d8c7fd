"""Allowlist entries by DNS name (docs/networking.md, "Names in allowlists").

Built on test_network's lab (its namespaces, servers and helpers), with one
change: the agent's upstream --dns is a DNS server of this test, on the node
address, answering fixed A records with chosen TTLs (UDP and TCP). Every
target is a TCP echo on 7001 in the outside namespace; the test knows each
name's address, so "not reachable even by IP" is probed directly.
"""

import json

import test_network as tn
from conftest import wait_for
from netlab import lab_fixture, net  # noqa: F401

UPSTREAM = tn.NODE
OK_ADDR = tn.OUTSIDE2            # ok.test, TTL 1 (so the agent's floor applies)
WILD_ADDR = "198.18.101.3"       # a.wild.test, b.c.wild.test
APEX_ADDR = "198.18.101.5"       # wild.test itself
BAD_ADDR = "198.18.101.4"        # bad.test: never allowed
OTHER_ADDR = "198.18.101.6"      # other.test: allowed after a policy change

DNS_SERVER = r'''
import socket, socketserver, struct, sys, threading
RECORDS = {"ok.test": ("%s", 1), "a.wild.test": ("%s", 300), "b.c.wild.test": ("%s", 300),
           "wild.test": ("%s", 300), "bad.test": ("%s", 300), "other.test": ("%s", 300)}
def answer(q):
    end, labels = 12, []
    while q[end]:
        labels.append(q[end + 1:end + 1 + q[end]].decode().lower()); end += q[end] + 1
    end += 5
    name, qtype = ".".join(labels), struct.unpack("!H", q[end - 4:end - 2])[0]
    rec = RECORDS.get(name)
    if not rec:
        return q[:2] + b"\x81\x83\x00\x01\x00\x00\x00\x00\x00\x00" + q[12:end]
    if qtype != 1:
        return q[:2] + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + q[12:end]
    return (q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end] + b"\xc0\x0c\x00\x01\x00\x01"
            + struct.pack("!IH", rec[1], 4) + socket.inet_aton(rec[0]))
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("%s", 53))
    while True:
        q, a = s.recvfrom(4096)
        try: s.sendto(answer(q), a)
        except Exception: pass
class T(socketserver.BaseRequestHandler):
    def handle(self):
        f = self.request.makefile("rb")
        while True:
            h = f.read(2)
            if len(h) < 2: return
            r = answer(f.read(struct.unpack("!H", h)[0]))
            self.request.sendall(struct.pack("!H", len(r)) + r)
class TS(socketserver.ThreadingTCPServer):
    allow_reuse_address = True; daemon_threads = True
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=TS(("%s", 53), T).serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
''' % (OK_ADDR, WILD_ADDR, WILD_ADDR, APEX_ADDR, BAD_ADDR, OTHER_ADDR, UPSTREAM, UPSTREAM)

# In a sandbox: one raw query, UDP or TCP, to a server; prints {"rcode", "addrs"}
# or {"error"}.
QUERY = r'''
import json, random, socket, struct, sys
name, proto, server = sys.argv[1], sys.argv[2], sys.argv[3]
q = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0\0\1\0\1"
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.sendto(q, (server, 53)); r = s.recv(4096)
    else:
        s = socket.create_connection((server, 53), timeout=3); s.sendall(struct.pack("!H", len(q)) + q)
        f = s.makefile("rb"); n = struct.unpack("!H", f.read(2))[0]; r = f.read(n)
except Exception as e:
    print(json.dumps({"error": type(e).__name__})); sys.exit(0)
an, off = struct.unpack("!H", r[6:8])[0], len(q)
addrs = []
for _ in range(an):
    off += 2; t, c, ttl, l = struct.unpack("!HHIH", r[off:off + 10]); off += 10
    if t == 1: addrs.append(socket.inet_ntoa(r[off:off + 4]))
    off += l
print(json.dumps({"rcode": r[3] & 15, "addrs": addrs}))
'''

# In a sandbox: everything a hostile resolver client can send. Each packet
# to the agent's resolver; then idle TCP connections beyond its limit.
GARBAGE = r'''
import os, random, socket, struct, sys, time
gw = sys.argv[1]
hdr = lambda qd=1, an=0, flags=0x0100: struct.pack("!HHHHHH", 7, flags, qd, an, 0, 0)
pkts = [b"", b"\0", hdr()[:11], hdr(), hdr() + b"\xc0\x0c\0\1\0\1", hdr() + b"\xc0\x0d\0\1\0\1",
        hdr() + b"\x01a\xc0\x0c\0\1\0\1", hdr() + b"\x3f" + b"a" * 10, hdr() + b"\x40a\0\0\1\0\1",
        hdr() + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1", hdr(qd=0), hdr(qd=65535) + b"\0\0\1\0\1",
        hdr(flags=0x8180) + b"\x02ok\x04test\0\0\1\0\1", hdr(an=3) + b"\x02ok\x04test\0\0\1\0\1",
        hdr() + b"\x02ok\x04test\0\0\1\0\1" + b"x" * 2000, hdr() + b"\x02o\xff\x04test\0\0\1\0\1",
        hdr() + b"\x02ok\x04test\0\0\1"]
rnd = random.Random(16)
pkts += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 600))) for _ in range(500)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for p in pkts:
    s.sendto(p, (gw, 53))
for p in pkts[:40]:
    try:
        c = socket.create_connection((gw, 53), timeout=2)
        c.sendall(struct.pack("!H", len(p)) + p if len(p) < 400 else b"\xff\xff" + p)
        c.close()
    except OSError:
        pass
idle = []
for _ in range(40):
    try: idle.append(socket.create_connection((gw, 53), timeout=2))
    except OSError: pass
print(len(idle), flush=True)
time.sleep(3)
'''


class DnsLab(tn.Lab):
    """test_network's lab with this test's DNS server as the agent's upstream."""

    dns = UPSTREAM

    def build(self):
        super().build()
        for a in (WILD_ADDR, APEX_ADDR, BAD_ADDR, OTHER_ADDR):
            tn.sh("ip", "-n", self.outside, "addr", "add", f"{a}/32", "dev", f"v4o-{self.suffix}")
        self.start_server(self.node, DNS_SERVER)

    def host_sets(self, sid):
        """{set name: {address: timeout}} of the sandbox's host sets."""
        r = tn.sh("ip", "netns", "exec", self.node, "nft", "-j", "list", "table", "ip", self.agent.net_table)
        out = {}
        for o in json.loads(r.stdout)["nftables"]:
            if "set" in o and o["set"]["name"].startswith(f"sbx-{sid}-h"):
                name = o["set"]["name"]
                out[name] = {}
                r2 = tn.sh("ip", "netns", "exec", self.node, "nft", "-j", "list", "set", "ip",
                           self.agent.net_table, name)
                for s in json.loads(r2.stdout)["nftables"]:
                    for e in s.get("set", {}).get("elem", []):
                        if isinstance(e, dict):
                            out[name][e["elem"]["val"]] = e["elem"].get("timeout")
                        else:
                            out[name][e] = None
        return out


lab = lab_fixture(DnsLab)


POLICY = {"egress": "allowlist", "allow": [{"host": "ok.test", "ports": [7001], "protocol": "tcp"},
                                           {"host": "*.wild.test"}]}


def query(net, sid, name, proto="udp", server=tn.GATEWAY):
    r = net.exec(sid, cmd=["python3", "-c", QUERY, name, proto, server], http_timeout=60)
    assert r.status == 200 and r.exit_code == 0, r
    return json.loads(r.stdout)


def test_upstream_answers_from_the_node(lab):
    """Positive control: the names the sandboxes are refused exist upstream,
    and every address they must not reach answers the node."""
    r = tn.sh("ip", "netns", "exec", lab.node, "python3", "-c", QUERY, "bad.test", "udp", UPSTREAM)
    assert json.loads(r.stdout) == {"rcode": 0, "addrs": [BAD_ADDR]}
    got = lab.probe_from_node(*(f"tcp:{a}:7001" for a in (OK_ADDR, WILD_ADDR, APEX_ADDR, BAD_ADDR, OTHER_ADDR)))
    assert all(got.values()), got


def test_allowed_names_resolve_and_connect(lab, net):
    sb = tn.create(net, network=POLICY)
    sid = sb["id"]
    assert sb["network"]["allow"][0]["host"] == "ok.test"
    assert net.sh(sid, "cat /etc/resolv.conf").split() == ["nameserver", tn.GATEWAY]
    # Nothing is reachable before it is resolved.
    assert tn.probe(net, sid, f"tcp:{OK_ADDR}:7001", f"tcp:{WILD_ADDR}:7001") == {
        f"tcp:{OK_ADDR}:7001": False, f"tcp:{WILD_ADDR}:7001": False}
    got = tn.probe(net, sid, "dns:ok.test", "dns:a.wild.test", "dns:b.c.wild.test")
    assert got == {"dns:ok.test": OK_ADDR, "dns:a.wild.test": WILD_ADDR, "dns:b.c.wild.test": WILD_ADDR}, got
    sets = lab.host_sets(sid)
    assert set(sets) == {f"sbx-{sid}-h0", f"sbx-{sid}-h1"}, sets
    assert set(sets[f"sbx-{sid}-h0"]) == {OK_ADDR} and set(sets[f"sbx-{sid}-h1"]) == {WILD_ADDR}, sets
    # TTL 1 upstream: the agent's floor of 30 s.
    assert sets[f"sbx-{sid}-h0"][OK_ADDR] == 30, sets
    assert sets[f"sbx-{sid}-h1"][WILD_ADDR] == 300, sets
    # ok.test only on tcp 7001 (the entry's ports); *.wild.test on any port.
    got = tn.probe(net, sid, f"tcp:{OK_ADDR}:7001", f"tcp:{OK_ADDR}:7002", f"tcp:{WILD_ADDR}:7002")
    assert got == {f"tcp:{OK_ADDR}:7001": True, f"tcp:{OK_ADDR}:7002": False, f"tcp:{WILD_ADDR}:7002": True}, got
    # Over TCP as well.
    assert query(net, sid, "ok.test", "tcp") == {"rcode": 0, "addrs": [OK_ADDR]}


def test_other_names_are_refused_and_unreachable(lab, net):
    sid = tn.create(net, network=POLICY)["id"]
    for name, proto in (("bad.test", "udp"), ("bad.test", "tcp"), ("wild.test", "udp"),
                        ("nowhere.test", "udp"), ("ok.test.evil.test", "udp"), ("xok.test", "udp")):
        assert query(net, sid, name, proto) == {"rcode": 5, "addrs": []}, (name, proto)
    got = tn.probe(net, sid, "dns:bad.test", "dns:wild.test", f"tcp:{BAD_ADDR}:7001", f"tcp:{APEX_ADDR}:7001")
    assert got == {"dns:bad.test": False, "dns:wild.test": False, f"tcp:{BAD_ADDR}:7001": False,
                   f"tcp:{APEX_ADDR}:7001": False}, got
    # No way around the agent's resolver: not the upstream (the node, always blocked) nor
    # any other (the lab's DNS on OUTSIDE answers every name; the node gets its answer).
    assert query(net, sid, "bad.test", "udp", UPSTREAM) == {"error": "TimeoutError"}
    assert query(net, sid, "bad.test", "udp", tn.OUTSIDE) == {"error": "TimeoutError"}
    r = tn.sh("ip", "netns", "exec", lab.node, "python3", "-c", QUERY, "bad.test", "udp", tn.OUTSIDE)
    assert json.loads(r.stdout)["rcode"] == 0
    assert all(not s for s in lab.host_sets(sid).values())


def test_address_leaves_the_set_after_its_ttl(lab, net):
    sid = tn.create(net, network=POLICY)["id"]
    assert tn.probe(net, sid, "dns:ok.test")["dns:ok.test"] == OK_ADDR
    assert tn.probe(net, sid, f"tcp:{OK_ADDR}:7001")[f"tcp:{OK_ADDR}:7001"] is True
    wait_for(lambda: not lab.host_sets(sid)[f"sbx-{sid}-h0"], timeout=90, interval=1, what="ok.test's address to expire")
    assert tn.probe(net, sid, f"tcp:{OK_ADDR}:7001")[f"tcp:{OK_ADDR}:7001"] is False
    # A new lookup brings it back.
    assert tn.probe(net, sid, "dns:ok.test")["dns:ok.test"] == OK_ADDR
    assert tn.probe(net, sid, f"tcp:{OK_ADDR}:7001")[f"tcp:{OK_ADDR}:7001"] is True


def test_live_policy_change(lab, net):
    sid = tn.create(net, network=POLICY)["id"]
    assert tn.probe(net, sid, "dns:a.wild.test")["dns:a.wild.test"] == WILD_ADDR
    assert tn.probe(net, sid, f"tcp:{WILD_ADDR}:7001")[f"tcp:{WILD_ADDR}:7001"] is True
    # Keep ok.test (its set survives, same index), replace the wildcard by other.test.
    new = {"egress": "allowlist", "allow": [{"host": "ok.test", "ports": [7001], "protocol": "tcp"},
                                            {"host": "other.test"}]}
    r = net.request("PUT", f"/v1/sandboxes/{sid}/network", body=new)
    assert r.status == 200, r
    assert tn.probe(net, sid, f"tcp:{WILD_ADDR}:7001")[f"tcp:{WILD_ADDR}:7001"] is False
    assert query(net, sid, "a.wild.test") == {"rcode": 5, "addrs": []}
    assert tn.probe(net, sid, "dns:other.test")["dns:other.test"] == OTHER_ADDR
    assert tn.probe(net, sid, f"tcp:{OTHER_ADDR}:7001")[f"tcp:{OTHER_ADDR}:7001"] is True
    # No host entries: resolv.conf back to --dns, the sets gone, nothing reachable by name.
    r = net.request("PUT", f"/v1/sandboxes/{sid}/network",
                    body={"egress": "allowlist", "allow": [{"cidr": f"{tn.OUTSIDE}/32"}]})
    assert r.status == 200, r
    assert net.sh(sid, "cat /etc/resolv.conf").split() == ["nameserver", UPSTREAM]
    assert lab.host_sets(sid) == {}
    assert tn.probe(net, sid, f"tcp:{OTHER_ADDR}:7001")[f"tcp:{OTHER_ADDR}:7001"] is False
    assert query(net, sid, "other.test") == {"rcode": 5, "addrs": []}
    # And back: the gateway again.
    r = net.request("PUT", f"/v1/sandboxes/{sid}/network", body=POLICY)
    assert r.status == 200, r
    assert net.sh(sid, "cat /etc/resolv.conf").split() == ["nameserver", tn.GATEWAY]
    assert tn.probe(net, sid, "dns:ok.test")["dns:ok.test"] == OK_ADDR


def test_bad_host_entries_are_rejected(net):
    for entry in ({"host": "*.test"}, {"host": "a..test"}, {"host": "ok.test", "cidr": "198.18.0.0/15"},
                  {"host": "a.*.test"}, {"host": 5}):
        r = net.post("/v1/sandboxes", {"template": "host", "network": {"egress": "allowlist", "allow": [entry]}})
        assert r.status == 400, (entry, r)


def test_garbage_does_not_hurt_the_resolver(lab, net):
    hostile = tn.create(net, network=POLICY)["id"]
    other = tn.create(net, network=POLICY)["id"]
    r = net.exec(hostile, cmd=["python3", "-c", GARBAGE, tn.GATEWAY], http_timeout=120)
    assert r.status == 200 and r.exit_code == 0, r
    assert int(r.stdout.strip()) > 0
    assert net.get("/healthz").status == 200
    assert query(net, other, "ok.test") == {"rcode": 0, "addrs": [OK_ADDR]}
    assert query(net, other, "a.wild.test", "tcp") == {"rcode": 0, "addrs": [WILD_ADDR]}
    assert tn.probe(net, other, f"tcp:{OK_ADDR}:7001")[f"tcp:{OK_ADDR}:7001"] is True
    # The hostile sandbox still resolves too, once its idle connections are gone.
    assert query(net, hostile, "ok.test") == {"rcode": 0, "addrs": [OK_ADDR]}


def test_no_raw_sockets_to_spoof_a_neighbour(lab, net):
    """Asking in another sandbox's name needs a forged source address: even
    root in a sandbox has no CAP_NET_RAW (the input chain's reverse-path check
    on port 53 is the second layer, validated by the unit test's nft dry
    run). The victim's sets stay empty."""
    victim = tn.create(net, network=POLICY)["id"]
    attacker = tn.create(net, network=POLICY)["id"]
    script = ("import socket\n"
              "try:\n socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP); print('raw')\n"
              "except PermissionError: print('denied')")
    r = net.exec(attacker, cmd=["python3", "-c", script], user="root", http_timeout=60)
    assert r.status == 200 and r.exit_code == 0 and r.stdout.strip() == "denied", r
    assert query(net, attacker, "a.wild.test") == {"rcode": 0, "addrs": [WILD_ADDR]}
    assert all(not s for s in lab.host_sets(victim).values())


def test_restart_keeps_names_working(lab, net):
    """After a SIGKILL and restart the table is rebuilt (the sets empty) and
    the resolver knows the adopted sandbox's policy again."""
    sid = tn.create(net, network=POLICY)["id"]
    assert tn.probe(net, sid, "dns:ok.test")["dns:ok.test"] == OK_ADDR
    lab.agent.kill9()
    lab.agent.start()
    assert set(lab.host_sets(sid)) == {f"sbx-{sid}-h0", f"sbx-{sid}-h1"}
    assert net.sh(sid, "cat /etc/resolv.conf").split() == ["nameserver", tn.GATEWAY]
    assert query(net, sid, "bad.test") == {"rcode": 5, "addrs": []}
    assert tn.probe(net, sid, "dns:ok.test")["dns:ok.test"] == OK_ADDR
    assert tn.probe(net, sid, f"tcp:{OK_ADDR}:7001")[f"tcp:{OK_ADDR}:7001"] is True
    # A live change after the restart still switches resolv.conf (its path is known again).
    r = net.request("PUT", f"/v1/sandboxes/{sid}/network", body={"egress": "allowlist", "allow": []})
    assert r.status == 200, r
    assert net.sh(sid, "cat /etc/resolv.conf").split() == ["nameserver", UPSTREAM]
