"""Attacks on the network from code in a sandbox, and on a sandbox from a
network neighbour. The lab is tests/integration/test_network.py's: the node
and an outside namespace of our own, addresses from 198.18.0.0/15 (plus
169.254.169.254 on the outside namespace as a live metadata target), a
--blocked-cidr, a DNS responder, and a networked agent running in the node
namespace. Every target a probe must not reach answers the node itself
(test_targets_answer_the_node), so a failed probe is the defence at work.
docs/networking.md and docs/security.md, "Attack classes: network"."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import rand_suffix, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import test_network as tn  # noqa: E402  (the lab, its servers and probe; nothing collected from it)
from netlab import lab_fixture, net  # noqa: E402,F401

OUTSIDE, OUTSIDE2, NODE, GATEWAY = tn.OUTSIDE, tn.OUTSIDE2, tn.NODE, tn.GATEWAY
METADATA, BLOCKED, AGENT_PORT = tn.METADATA, tn.BLOCKED, tn.AGENT_PORT

# An IPv6 echo on the node: what a link-local or multicast route would reach.
NODE6_SERVER = r'''
import socket, threading
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 7006)); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"node6"); c.close()
'''

# A DNS query for NAME of type A to SERVER:53 over UDP; prints the rcode, or "timeout".
DNS_QUERY = r'''
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
try:
    s.sendto(q, (server, 53)); a = s.recv(512)
    print("rcode", a[3] & 0x0f, "answers", struct.unpack(">H", a[6:8])[0])
except OSError:
    print("timeout")
'''


# Connects to each HOST:PORT (the agent's port is no echo): true when the connection opens.
CONNECT = r'''
import json, socket, sys
res = {}
for t in sys.argv[1:]:
    h, p = t.rsplit(":", 1)
    try:
        socket.create_connection((h, int(p)), timeout=1.5).close(); res[t] = True
    except OSError:
        res[t] = False
print(json.dumps(res))
'''


lab = lab_fixture(tn.Lab, lambda lab: lab.start_server(lab.node, NODE6_SERVER))


probe = tn.probe


def in_ns(ns, code, *args):
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r
    return r.stdout


def test_targets_answer_the_node(lab):
    """Positive control: every forbidden target answers from the node."""
    got = lab.probe_from_node(f"tcp:{NODE}:7001", f"tcp:{METADATA}:7001",
                              f"tcp:{BLOCKED}:7001", f"tcp:{OUTSIDE2}:7002", f"udp:{OUTSIDE}:7003")
    assert all(got.values()), got
    got = json.loads(in_ns(lab.node, CONNECT, f"{NODE}:{AGENT_PORT}", f"{GATEWAY}:{AGENT_PORT}"))
    assert got[f"{NODE}:{AGENT_PORT}"], got
    assert "node6" in in_ns(lab.node, "import socket; print(socket.create_connection(('::1', 7006)).recv(9))")


FORBIDDEN = [f"tcp:{NODE}:7001", f"tcp:{GATEWAY}:7001",
             f"tcp:{METADATA}:7001", f"udp:{METADATA}:7003", f"tcp:{BLOCKED}:7001", f"udp:{BLOCKED}:7003"]

POLICIES = {
    "deny": {"egress": "deny"},
    "allow": {"egress": "allow"},
    # every forbidden range listed: listing them must not open them
    "allowlist-of-everything": {"egress": "allowlist", "allow": [
        {"cidr": "0.0.0.0/1"}, {"cidr": "128.0.0.0/1"}, {"cidr": "169.254.169.254/32"},
        {"cidr": f"{NODE}/32"}, {"cidr": "198.18.64.0/24"}, {"cidr": "198.19.200.0/24"}]},
}


@pytest.mark.parametrize("policy", POLICIES)
def test_node_agent_metadata_and_blocked_ranges_unreachable(lab, net, policy):
    """Under every policy, the node's addresses (the agent's port too), the
    gateway, the metadata address, the --blocked-cidr range and the sandbox
    range's broadcast are out of reach, over TCP and UDP."""
    sb = net.create(template="host", network=POLICIES[policy])
    other = net.create(template="host", network={"egress": "allow"})
    targets = FORBIDDEN + [f"tcp:{other['network']['ip']}:7001"]
    got = probe(net, sb["id"], *targets, f"tcp:{OUTSIDE}:7001")
    reached = [t for t in targets if got[t]]
    assert not reached, f"{policy}: reached {reached}"
    # the probe works: the open outside is reached where the policy allows it
    assert got[f"tcp:{OUTSIDE}:7001"] is (policy != "deny"), got
    r = net.exec(sb["id"], cmd=["python3", "-c", CONNECT, f"{NODE}:{AGENT_PORT}", f"{GATEWAY}:{AGENT_PORT}"])
    assert r.exit_code == 0, r
    opened = [t for t, ok in json.loads(r.stdout).items() if ok]
    assert not opened, f"{policy}: connected to the node at {opened}"


def test_another_sandbox_is_unreachable_both_ways(lab, net):
    """A and B both under allow, B serving on 9000 (reachable from the node):
    A reaches neither B's server nor B's address on any port, and B cannot
    reach A either."""
    a = net.create(template="host", network={"egress": "allow"})
    b = net.create(template="host", network={"egress": "allow"})
    for sb in (a, b):
        r = net.post(f"/v1/sandboxes/{sb['id']}/exec", {"cmd": ["python3", "-c", tn.NODE_SERVER.replace(
            '"0.0.0.0", 7001', '"0.0.0.0", 9000')], "background": True})
        assert r.status == 201, r
    for sb in (a, b):
        t = f"tcp:{sb['network']['ip']}:9000"
        wait_for(lambda: lab.probe_from_node(t)[t], 15, what=f"the server in {sb['id']}")
    for src, dst in ((a, b), (b, a)):
        got = probe(net, src["id"], f"tcp:{dst['network']['ip']}:9000", f"udp:{dst['network']['ip']}:7003")
        assert not any(got.values()), (src["id"], got)


def test_a_neighbour_cannot_connect_into_a_sandbox(lab, net):
    """A host on the node's network routes the sandbox range through the node
    and connects to a sandbox's server directly: dropped (only replies to what
    the sandbox opened are forwarded in; the port proxy is the way in)."""
    sb = net.create(template="host", network={"egress": "allow"})
    r = net.post(f"/v1/sandboxes/{sb['id']}/exec", {"cmd": ["python3", "-c", tn.NODE_SERVER.replace(
        '"0.0.0.0", 7001', '"0.0.0.0", 9000')], "background": True})
    assert r.status == 201, r
    t = f"tcp:{sb['network']['ip']}:9000"
    wait_for(lambda: lab.probe_from_node(t)[t], 15, what="the server in the sandbox")
    tn.sh("ip", "-n", lab.outside, "route", "add", tn.CIDR, "via", NODE)
    try:
        got = json.loads(in_ns(lab.outside, tn.PROBE, t, f"udp:{sb['network']['ip']}:9000"))
        assert not any(got.values()), got
    finally:
        tn.sh("ip", "-n", lab.outside, "route", "del", tn.CIDR, "via", NODE)


RAW = r'''
import json, socket, struct, sys
res = {}
for name, fam, typ, proto in (("raw-ip", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
                              ("raw-icmp", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                              ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0x0806),
                              ("packet-dgram", socket.AF_PACKET, socket.SOCK_DGRAM, 0x0806)):
    try:
        s = socket.socket(fam, typ, socket.htons(proto) if fam == socket.AF_PACKET else proto)
    except OSError as e:
        res[name] = "refused %d" % e.errno
        continue
    res[name] = "opened"
    try:
        if name == "raw-ip":
            # a UDP datagram from the neighbour's address to the outside sink
            src, dst, tag = sys.argv[1], sys.argv[2], sys.argv[3].encode()
            udp = struct.pack(">HHHH", 4444, 7004, 8 + len(tag), 0) + tag
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                             socket.inet_aton(src), socket.inet_aton(dst))
            s.sendto(ip + udp, (dst, 0))
        elif name == "packet":
            # a gratuitous ARP reply claiming the neighbour's address
            s.bind(("eth0", 0))
            mac = open("/sys/class/net/eth0/address").read().strip()
            hw = bytes.fromhex(mac.replace(":", ""))
            arp = struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, hw, socket.inet_aton(sys.argv[1]),
                              b"\xff" * 6, socket.inet_aton(sys.argv[1]))
            s.send(b"\xff" * 6 + hw + b"\x08\x06" + arp)
        res[name] += " sent"
    except OSError as e:
        res[name] += " send-failed %d" % e.errno
print(json.dumps(res))
'''


def test_raw_sockets_spoofing_and_arp_are_refused(lab, net):
    """Root in A tries raw IP and packet sockets to send a UDP datagram with
    B's source address and a gratuitous ARP claiming B's address: the sockets
    are refused (no CAP_NET_RAW); the outside sink never sees the spoofed
    datagram; the node's neighbour entry for B and B's reachability are
    unchanged."""
    a = net.create(template="host", network={"egress": "allow"})
    b = net.create(template="host", network={"egress": "allow"})
    bip = b["network"]["ip"]
    tag = "spoof-raw-" + rand_suffix()
    r = net.exec(a["id"], cmd=["python3", "-c", RAW, bip, OUTSIDE, tag], user="root")
    assert r.exit_code == 0, r
    got = json.loads(r.stdout)
    assert all(v.startswith("refused") for v in got.values()), got
    seen = in_ns(lab.node, f"import socket; s=socket.create_connection(('{OUTSIDE}', 7005)); "
                           "print(s.recv(65536).decode())")
    assert tag not in seen
    veth = "spx%08x" % int.from_bytes(socket.inet_aton(a["network"]["ip"]), "big")
    neigh = lab.agent.in_node("ip", "neigh", "show", bip).stdout
    assert veth not in neigh, f"the node learnt B's address on A's veth: {neigh}"
    r = net.post(f"/v1/sandboxes/{b['id']}/exec", {"cmd": ["python3", "-c", tn.NODE_SERVER.replace(
        '"0.0.0.0", 7001', '"0.0.0.0", 9000')], "background": True})
    assert r.status == 201
    t = f"tcp:{bip}:9000"
    wait_for(lambda: lab.probe_from_node(t)[t], 15, what="B reachable from the node")


def test_freebind_spoofing_a_neighbours_address_is_dropped(lab, net):
    """Without raw sockets: IP_FREEBIND (no capability needed) to bind B's
    real address and send UDP to the outside sink; only A's genuine datagram
    arrives."""
    a = net.create(template="host", network={"egress": "allow"})
    b = net.create(template="host", network={"egress": "allow"})
    tag = rand_suffix()
    code = (f"import socket\nfor src, m in (('{b['network']['ip']}', 'spoof-nb-{tag}'), (None, 'real-{tag}')):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    if src:\n        s.setsockopt(socket.SOL_IP, 15, 1); s.bind((src, 0))\n"
            f"    try:\n        s.sendto(m.encode(), ('{OUTSIDE}', 7004))\n    except OSError:\n        pass\n")
    assert net.exec(a["id"], cmd=["python3", "-c", code], user="root").exit_code == 0

    def seen():
        return in_ns(lab.node, f"import socket; s=socket.create_connection(('{OUTSIDE}', 7005)); "
                               "print(s.recv(65536).decode())").strip().split(",")

    wait_for(lambda: f"real-{tag}" in seen(), 10, what="the genuine datagram")
    assert f"spoof-nb-{tag}" not in seen()


IPV6 = r'''
import json, socket
res = {"addrs": open("/proc/net/if_inet6").read().split() if __import__("os").path.exists("/proc/net/if_inet6") else []}
for name, addr in (("link-local-gw", "fe80::1%eth0"), ("all-nodes", "ff02::1%eth0"), ("all-routers", "ff02::2%eth0")):
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.settimeout(1.5)
        s.connect(socket.getaddrinfo(addr, 7006, socket.AF_INET6)[0][4]); res[name] = s.recv(9).decode()
    except OSError as e:
        res[name] = "failed %d" % (e.errno or 0)
try:
    open("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "w").write("0"); res["sysctl"] = "written"
except OSError as e:
    res["sysctl"] = "failed %d" % e.errno
print(json.dumps(res))
'''


def test_no_ipv6_route_to_the_node(lab, net):
    """Root in a sandbox looks for IPv6: eth0 has no IPv6 address, the
    node's link-local and multicast addresses (where an IPv6 service of the
    node listens) are unreachable, and IPv6 cannot be turned back on."""
    sb = net.create(template="host", network={"egress": "allow"})
    r = net.exec(sb["id"], cmd=["python3", "-c", IPV6], user="root")
    assert r.exit_code == 0, r
    got = json.loads(r.stdout)
    assert not [a for a in got["addrs"] if a == "eth0"], got["addrs"]
    for k in ("link-local-gw", "all-nodes", "all-routers", "sysctl"):
        assert got[k].startswith("failed"), (k, got)


def dns(net, sid, server, name):
    r = net.exec(sid, cmd=["python3", "-c", DNS_QUERY, server, name])
    assert r.exit_code == 0, r
    return r.stdout.split()


def test_dns_to_other_resolvers_is_blocked_under_an_allowlist(lab, net):
    """Under an allowlist, DNS to a resolver other than the node's --dns (an
    open resolver at another outside address, on the allowed host's own
    address port 53 where that port is not listed) gets no answer: DNS is no
    tunnel past the policy. The configured resolver answers (control)."""
    sb = net.create(template="host", network={"egress": "allowlist", "allow": [
        {"cidr": f"{OUTSIDE2}/32", "ports": [7002], "protocol": "tcp"}]})
    assert dns(net, sb["id"], OUTSIDE, "ok.test")[:2] == ["rcode", "0"]
    assert dns(net, sb["id"], OUTSIDE2, "ok.test") == ["timeout"]
    assert dns(net, sb["id"], NODE, "ok.test") == ["timeout"]


def test_names_policy_refuses_other_names_and_direct_dns(lab, net):
    """With a host entry for ok.test: a lookup of another name through the
    agent's resolver is REFUSED; the upstream resolver asked directly does
    not answer; and the address is closed until the agent itself resolves
    the allowed name (then open: the control)."""
    sb = net.create(template="host", network={"egress": "allowlist", "allow": [
        {"host": "ok.test", "ports": [7001], "protocol": "tcp"}]})
    sid = sb["id"]
    assert net.sh(sid, "cat /etc/resolv.conf").split() == ["nameserver", GATEWAY]
    assert dns(net, sid, GATEWAY, "evil.test")[:2] == ["rcode", "5"]
    assert dns(net, sid, OUTSIDE, "ok.test") == ["timeout"]
    assert dns(net, sid, OUTSIDE2, "ok.test") == ["timeout"]
    assert probe(net, sid, f"tcp:{OUTSIDE}:7001") == {f"tcp:{OUTSIDE}:7001": False}
    assert probe(net, sid, "dns:ok.test") == {"dns:ok.test": OUTSIDE}
    assert probe(net, sid, f"tcp:{OUTSIDE}:7001", f"tcp:{OUTSIDE}:7002") == {
        f"tcp:{OUTSIDE}:7001": True, f"tcp:{OUTSIDE}:7002": False}


def test_sandbox_cannot_ask_the_resolver_in_anothers_name(lab, net):
    """A (no host entries) sends a lookup of B's allowed name to the
    gateway resolver with B's address as source (IP_FREEBIND): no answer,
    and B's address set stays empty (B still cannot connect)."""
    b = net.create(template="host", network={"egress": "allowlist", "allow": [
        {"host": "ok.test", "ports": [7001], "protocol": "tcp"}]})
    a = net.create(template="host", network={"egress": "allow"})
    code = DNS_QUERY.replace("s.settimeout(1.5)", f"s.settimeout(1.5); s.setsockopt(socket.SOL_IP, 15, 1); "
                                                   f"s.bind(('{b['network']['ip']}', 0))")
    r = net.exec(a["id"], cmd=["python3", "-c", code, GATEWAY, "ok.test"], user="root")
    assert r.exit_code == 0 and r.stdout.split() == ["timeout"], r
    assert probe(net, b["id"], f"tcp:{OUTSIDE}:7001") == {f"tcp:{OUTSIDE}:7001": False}
