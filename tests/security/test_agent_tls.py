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
  the right CA (--agent-ca) gets the same Sandbox Ready over TLS and deletes it.

docs/security.md, "TLS to the agents"."""

import json
import selectors
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from conftest import REPO, find_free_port, start_agent, stop_agent, wait_for, write_token_file  # noqa: E402
from test_agent_cluster import ClusterAgent  # noqa: E402
from test_operator import OP_NS, condition, get_sbx, kube, manifest, running_operator, wait_ready  # noqa: E402,F401

CLI = REPO / "build" / "bin" / "sandpit"
NODE = "node-tls"
NAME = "sandpit-agent"


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr}"


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=d)
    return d / f"{name}.pem"


def make_cert(d, ca, name, dns):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={dns}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{dns}\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("agent-pki")
    ca = make_ca(d, "ca")
    other = make_ca(d, "other-ca")
    cert, key = make_cert(d, "ca", "agent", NAME)
    return {"ca": ca, "other": other, "cert": cert, "key": key}


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
