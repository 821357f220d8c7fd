"""Issues 16/17: TLS between the operator (and the CLI) and the agents.

A real cluster-mode agent serves its TCP API over TLS (--tls-cert/--tls-key)
with a certificate for the fixed name "sandpit-agent" made here by a CA the
test makes with the openssl CLI; its Lease advertises https://127.0.0.1:PORT.

- a client with that CA and the name succeeds (the CLI, through lib's agent
  client and curl's CONNECT_TO; and Python's ssl);
- without the CA (the system's), with another CA, or expecting another name
  it fails; plain HTTP to the TLS port gets no HTTP answer;
- the bearer token is still required over TLS (401 without or with a wrong one);
- `sandpit mcp` against the agent takes --agent-ca too;
- the operator with another CA leaves a Sandbox Ready=False, reason
  AgentTLSFailed, with the certificate error in its message; the operator with
  the right CA (--agent-ca) gets the same Sandbox Ready over TLS and deletes it;
- `sandpit mcp --url` trusts a gateway's certificate of a CA given with
  --gateway-ca or $SANDPIT_GATEWAY_CA, and that CA alone;
- the operator's gateway relays a sandbox port (a web server, and an upgraded
  connection both ways) to the TLS agent through its port proxy; a replica with
  another CA answers 502 with a JSON message naming the certificate problem,
  and leaves no fd or thread behind.

docs/security.md, "TLS to the agents"."""

import json
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from conftest import (REPO, UPGRADE_ECHO_SERVER, find_free_port, make_ca, make_cert, start_agent, stop_agent,  # noqa: E402
                      wait_for, write_token_file)
from test_agent_cluster import ClusterAgent  # noqa: E402
from test_operator import (OP_NS, Operator, condition, get_sbx, kube, manifest, running_operator,  # noqa: E402,F401
                           wait_ready)

CLI = REPO / "build" / "bin" / "sandpit"
NODE = "node-tls"
NAME = "sandpit-agent"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("agent-pki")
    ca, _ = make_ca(d, "ca", days=1)
    other, _ = make_ca(d, "other-ca", days=1)
    cert, key = make_cert(d, "ca", "agent", NAME, days=1)
    gw_cert, gw_key = make_cert(d, "ca", "gateway", "gateway", san="IP:127.0.0.1", days=1)
    return {"ca": ca, "other": other, "cert": cert, "key": key, "gw_cert": gw_cert, "gw_key": gw_key}


@pytest.fixture(scope="module")
def node(templates_dir, kube, pki, tmp_path_factory):  # noqa: F811 (kube is test_operator's fixture)
    tf, token = write_token_file(tmp_path_factory.mktemp("agent-tls-token"))
    port = find_free_port()
    a = start_agent("tls", templates_dir, cls=ClusterAgent, listen=f"127.0.0.1:{port}", token_file=tf,
                    extra_args=["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
                                "--kubeconfig", kube.kubeconfig, "--node-name", NODE, "--lease-duration", "10",
                                "--capacity-cpu", "4", "--capacity-memory", str(4 << 30)])
    a.port, a.token, a.token_file, a.node = port, token, tf, NODE
    yield a
    stop_agent(a)


def cli(node, *args, ca=None, server=None, name=None):
    argv = [str(CLI), "--server", server or f"https://127.0.0.1:{node.port}", "--token-file", str(node.token_file)]
    if ca:
        argv += ["--agent-ca", str(ca)]
    if name:
        argv += ["--agent-server-name", name]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})


def tls_request(node, ca, path="/v1/sandboxes", token=None, server_name=NAME):
    """(status, body) of a GET over TLS with Python's ssl, checking the name."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\n{auth}Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_cli_with_the_ca_succeeds(node, pki):
    p = cli(node, "ls", "--json", ca=pki["ca"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sandboxes"] == []


def test_cli_without_the_ca_or_with_another_fails(node, pki):
    for ca in (None, pki["other"]):
        p = cli(node, "ls", ca=ca)
        assert p.returncode != 0, f"ls succeeded with CA {ca}"
        assert "certificate" in p.stderr.lower() or "ssl" in p.stderr.lower(), p.stderr


def test_a_certificate_for_another_name_fails(node, pki):
    p = cli(node, "ls", ca=pki["ca"], name="other-agent")
    assert p.returncode != 0
    assert "other-agent" in p.stderr or "certificate" in p.stderr.lower(), p.stderr
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_request(node, pki["ca"], token=node.token, server_name="other-agent")


def test_python_ssl_with_the_ca_and_the_token(node, pki):
    status, body = tls_request(node, pki["ca"], token=node.token)
    assert status == 200, body
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_request(node, pki["other"], token=node.token)


def test_the_token_is_still_required_over_tls(node, pki):
    assert tls_request(node, pki["ca"])[0] == 401
    assert tls_request(node, pki["ca"], token="x" * 48)[0] == 401


def test_plain_http_to_the_tls_port_fails(node, pki):
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as s:
        s.sendall(f"GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {node.token}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert not data.startswith(b"HTTP/"), data[:200]
    p = cli(node, "ls", server=f"http://127.0.0.1:{node.port}")
    assert p.returncode != 0


def test_the_lease_advertises_https(kube, node):  # noqa: F811
    def endpoint():
        st, _, obj = kube.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{OP_NS}/leases/sandpit-agent-{NODE}")
        return st == 200 and json.dumps(obj)
    text = wait_for(endpoint, 20, what="the agent's Lease")
    assert f"https://127.0.0.1:{node.port}" in text, text


def test_operator_over_tls(kube, node, pki, tmp_path_factory):  # noqa: F811
    name = "tls-sbx"
    # Another CA: the Sandbox is not created; its condition says why.
    gen = running_operator(kube, node, tmp_path_factory.mktemp("op-bad-ca"),
                           extra=["--agent-ca", str(pki["other"]), "--no-leader-elect"])
    next(gen)
    try:
        kube.kubectl("apply", "-f", "-", input=manifest(name))

        def refused():
            c = condition(get_sbx(kube, name), "Ready")
            return c if c and c.get("reason") == "AgentTLSFailed" else None
        c = wait_for(refused, 60, what="Ready=False AgentTLSFailed")
        assert c["status"] == "False"
        assert "certificate" in c["message"].lower() or "ssl" in c["message"].lower(), c
        assert not json.loads(cli(node, "ls", "--json", ca=pki["ca"]).stdout)["sandboxes"], "a sandbox was created"
    finally:
        with pytest.raises(StopIteration):
            next(gen)
    # The right CA: the same Sandbox gets Ready over TLS, then goes away.
    gen = running_operator(kube, node, tmp_path_factory.mktemp("op-ca"),
                           extra=["--agent-ca", str(pki["ca"]), "--no-leader-elect"])
    next(gen)
    try:
        obj = wait_ready(kube, name)
        sid = obj["status"]["sandboxID"]
        p = cli(node, "exec", sid, "--", "echo", "over-tls", ca=pki["ca"])
        assert p.returncode == 0 and "over-tls" in p.stdout, p.stderr
        kube.kubectl("delete", f"sandbox/{name}", "--timeout=60s")
        assert get_sbx(kube, name) is None
        assert not json.loads(cli(node, "ls", "--json", ca=pki["ca"]).stdout)["sandboxes"]
    finally:
        with pytest.raises(StopIteration):
            next(gen)


def mcp_list(node, ca):
    """`sandpit mcp` against the TLS agent: the list_sandboxes tool's result."""
    msgs = [{"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_sandboxes", "arguments": {}}}]
    # stdin stays open until the answer: at its end the session stops its calls
    p = subprocess.Popen([str(CLI), "--server", f"https://127.0.0.1:{node.port}", "--agent-ca", str(ca), "mcp",
                          "--token-file", str(node.token_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"})
    try:
        p.stdin.write("".join(json.dumps(m) + "\n" for m in msgs))
        p.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sel.select(deadline - time.monotonic()):
            line = p.stdout.readline()
            if not line:
                break
            m = json.loads(line)
            if m.get("id") == 2:
                return m
        raise AssertionError("no answer to tools/call")
    finally:
        p.stdin.close()
        p.wait(30)
        p.stdout.close()
        p.stderr.close()


def test_mcp_takes_the_ca(node, pki):
    ok = mcp_list(node, pki["ca"])
    assert not ok["result"].get("isError"), ok
    bad = mcp_list(node, pki["other"])
    assert bad.get("error") or bad["result"].get("isError"), bad


# --- the gateway's port proxy to a TLS agent ----------------------------------

def start_gateway_operator(kube, node, tmp, ca, extra=()):
    """An operator serving the gateway (leader election on: the first one
    started reconciles, a later one stands by and serves the gateway only)."""
    op = Operator(kube, node, tmp, extra=["--agent-ca", str(ca), "--gateway-listen", "127.0.0.1:0",
                                          "--gateway-auth", "none", *extra])

    def port():
        m = re.search(r"gateway \(E2B API\) on \S+, tcp port (\d+)", op.log.read_text())
        return int(m.group(1)) if m else None
    wait_for(lambda: port() or op.proc.poll() is not None, 30, what="the operator's gateway port")
    assert op.proc.poll() is None, "operator exited at start:\n" + op.log_tail()
    op.gateway_port = port()
    return op


def stop_gateway_operator(op, node):
    rc = op.stop()
    log = op.log.read_text()
    assert rc == 0, f"operator did not stop cleanly on SIGTERM ({rc}):\n{log[-4000:]}"
    assert node.token not in log, "the agent token was logged"


def port_get(op, name, port, path="/"):
    """(status, headers text, body) of a GET of a sandbox port through the gateway."""
    with socket.create_connection(("127.0.0.1", op.gateway_port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: {name}\r\nE2b-Sandbox-Port: {port}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return int(head.split()[1]), head.decode(), body


def proc_counts(pid):
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def test_gateway_port_proxy_over_tls(kube, node, pki, tmp_path_factory):  # noqa: F811
    name = "tls-proxy"
    web_port, echo_port = find_free_port(), find_free_port()
    good = start_gateway_operator(kube, node, tmp_path_factory.mktemp("op-gw-ca"), pki["ca"])
    bad = None
    try:
        kube.kubectl("apply", "-f", "-", input=manifest(name))
        # the gateway names a sandbox by its object's name, the agent by its sandboxID
        sid = wait_ready(kube, name)["status"]["sandboxID"]
        p = cli(node, "exec", "-d", "--shell", sid,
                f"mkdir -p /tmp/www && echo hello-over-tls > /tmp/www/index.html && cd /tmp/www && "
                f"exec python3 -m http.server {web_port} --bind 127.0.0.1", ca=pki["ca"])
        assert p.returncode == 0, p.stderr
        p = cli(node, "exec", "-d", sid, "--", "python3", "-c", UPGRADE_ECHO_SERVER, str(echo_port), ca=pki["ca"])
        assert p.returncode == 0, p.stderr

        # A page of the sandbox's web server, through the gateway, the proxy
        # and the agent's TLS.
        last = []

        def page():
            st, _, body = port_get(good, name, web_port, "/index.html")
            last[:] = [st, body[:300]]
            return (st, body) if st == 200 else None
        try:
            st, body = wait_for(page, 30, what="the sandbox's web server through the gateway")
        except AssertionError as e:
            raise AssertionError(f"{e}; the last answer: {last}\n{good.log_tail()}") from None
        assert body == b"hello-over-tls\n"
        assert port_get(good, name, web_port, "/missing.html")[0] == 404

        # An upgraded connection: bytes both ways, more than one TLS record.
        def upgraded():
            s = socket.create_connection(("127.0.0.1", good.gateway_port), timeout=30)
            s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: {name}\r\nE2b-Sandbox-Port: {echo_port}\r\n"
                      "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(1)
                if not chunk:
                    break
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                s.close()
                return None
            return s
        s = wait_for(upgraded, 30, what="an upgraded connection to the sandbox's echo server")
        with s:
            for msg in (b"ping", os.urandom(200000)):
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = s.recv(65536)
                    assert chunk, f"the upgraded connection ended after {len(got)} of {len(msg)} bytes"
                    got += chunk
                assert got == msg

        # Another replica (standing by: it does not reconcile) with another
        # CA: a 502 with the reason, nothing left behind.
        bad = start_gateway_operator(kube, node, tmp_path_factory.mktemp("op-gw-other-ca"), pki["other"])
        st, head, body = port_get(bad, name, web_port, "/index.html")
        assert st == 502, (st, body)
        assert "application/json" in head.lower(), head
        msg = json.loads(body)["message"]
        assert "certificate" in msg.lower() and NAME in msg, msg
        assert b"hello-over-tls" not in body
        base = proc_counts(bad.proc.pid)
        for _ in range(10):
            assert port_get(bad, name, web_port, "/index.html")[0] == 502
        # the server's connection threads end after their answer: wait for them
        wait_for(lambda: all(a <= b for a, b in zip(proc_counts(bad.proc.pid), base)), 30,
                 what=f"the fds and threads of the 502s gone (baseline {base})")
        # the right CA still serves it
        assert port_get(good, name, web_port, "/index.html")[:3:2] == (200, b"hello-over-tls\n")
        kube.kubectl("delete", f"sandbox/{name}", "--timeout=60s")
        assert get_sbx(kube, name) is None
    finally:
        if get_sbx(kube, name) is not None:
            kube.kubectl("delete", f"sandbox/{name}", "--timeout=60s", check=False)
        if bad:
            stop_gateway_operator(bad, node)
        stop_gateway_operator(good, node)


# --- `sandpit mcp --url` to a gateway whose certificate the system does not know --


def bridge_tools(url, *args, env=None):
    """`sandpit mcp --url URL ARGS`: initialize, then tools/list; its answer."""
    msgs = [{"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}]
    p = subprocess.Popen([str(CLI), "mcp", "--url", url, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={"PATH": "/usr/bin:/bin", "SANDPIT_API_KEY": "any", **(env or {})})
    try:
        p.stdin.write(json.dumps(msgs[0]) + "\n")
        p.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        sent = False
        while time.monotonic() < deadline and sel.select(deadline - time.monotonic()):
            line = p.stdout.readline()
            if not line:
                break
            m = json.loads(line)
            if m.get("id") == 1 and "error" in m:
                return m  # initialize failed: the rest would too
            if m.get("id") == 1 and not sent:
                p.stdin.write("".join(json.dumps(x) + "\n" for x in msgs[1:]))
                p.stdin.flush()
                sent = True
            if m.get("id") == 2:
                return m
        raise AssertionError("no answer from the bridge" + (f": {p.stderr.read()}" if p.poll() is not None else ""))
    finally:
        p.stdin.close()
        p.wait(30)
        p.stdout.close()
        p.stderr.close()


def test_mcp_bridge_takes_a_gateway_ca(kube, node, pki, tmp_path_factory):  # noqa: F811
    op = start_gateway_operator(kube, node, tmp_path_factory.mktemp("op-gw-tls"), pki["ca"],
                                extra=["--gateway-tls-cert", str(pki["gw_cert"]),
                                       "--gateway-tls-key", str(pki["gw_key"])])
    try:
        url = f"https://127.0.0.1:{op.gateway_port}/mcp"
        ok = bridge_tools(url, "--gateway-ca", str(pki["ca"]))
        assert "result" in ok and any(t["name"] == "list_sandboxes" for t in ok["result"]["tools"]), ok
        ok = bridge_tools(url, env={"SANDPIT_GATEWAY_CA": str(pki["ca"])})
        assert "result" in ok, ok
        # the system's CAs, or another CA: refused, with the reason
        for args in ((), ("--gateway-ca", str(pki["other"]))):
            bad = bridge_tools(url, *args)
            assert "error" in bad, (args, bad)
            msg = bad["error"]["message"].lower()
            assert "certificate" in msg or "ssl" in msg or "tls" in msg, (args, bad)
        # a CA file that is not there: a clear error at start
        p = subprocess.run([str(CLI), "mcp", "--url", url, "--gateway-ca", "/nonexistent/ca.pem"],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                           env={"PATH": "/usr/bin:/bin"})
        assert p.returncode != 0 and "/nonexistent/ca.pem" in p.stderr, p.stderr
    finally:
        stop_gateway_operator(op, node)
