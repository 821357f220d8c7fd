"""E2B_DOMAIN mode over TLS: the SDK with only E2B_API_KEY and E2B_DOMAIN set
reaches https://api.<domain> (the control plane) and
https://<port>-<id>.<domain> (envd, the code interpreter, ports), all served
by one gateway listener with a certificate the test makes (a CA of its own and
a wildcard certificate for *.<domain>, trusted through NODE_EXTRA_CA_CERTS).
The names resolve to the gateway's loopback address in the node process only
(js/resolve-domain.cjs, preloaded), so /etc/hosts is left alone. The gateway
listens on port 443 of a random 127.x.y.z address, as the SDK speaks https
without a port."""

import json
import os
import random
import subprocess

import pytest

from conftest import (AGENT_BIN, HERE, SDK_LINES, UPGRADE_ECHO_SERVER, Agent, make_ca, make_cert, make_key,
                      read_exactly, read_head, refresh_gateway_port, start_agent, stop_agent)

pytestmark = pytest.mark.slow

DOMAIN = "e2b.sandpit.test"


def random_loopback():
    """A random 127.x.y.z address, so that port 443 on it is free."""
    return "127.{}.{}.{}".format(random.randint(1, 254), random.randint(0, 255), random.randint(1, 254))


def run_domain_env(addr, ca, key="e2b_" + "0" * 40):
    """The environment of an SDK script in E2B_DOMAIN mode: the API key, the
    domain, the CA to trust, and where js/resolve-domain.cjs sends the domain's
    names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_") and k != "NODE_OPTIONS"}
    env.update(E2B_API_KEY=key, E2B_DOMAIN=DOMAIN, NODE_EXTRA_CA_CERTS=str(ca),
               SANDPIT_TEST_DOMAIN=DOMAIN, SANDPIT_TEST_ADDR=addr)
    return env


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("compat-tls")
    ca, _ = make_ca(d, "ca")
    other_ca, _ = make_ca(d, "other-ca")
    cert, key = make_cert(d, "ca", "server", f"*.{DOMAIN}", san=f"DNS:*.{DOMAIN},DNS:{DOMAIN}")
    return {"ca": ca, "other_ca": other_ca, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def tls_agent(templates_dir, certs, agent):
    """A second agent whose gateway serves TLS on <random 127.x.y.z>:443 with
    --gateway-domain (the session's agent, plain HTTP, is started first so that
    both are not starting at once)."""
    addr = random_loopback()
    a = start_agent("compat-tls", templates_dir,
                    extra_args=["--gateway-listen", f"{addr}:443", "--gateway-domain", DOMAIN,
                                "--gateway-tls-cert", str(certs["cert"]),
                                "--gateway-tls-key", str(certs["key"])])
    try:
        refresh_gateway_port(a)
    except RuntimeError as e:
        stop_agent(a)
        pytest.fail(str(e), pytrace=False)
    a.gateway_addr = addr
    # its gateway takes API keys only (docs/auth.md), as any agent's
    a.api_key = make_key(a, "compat-tls")
    yield a
    stop_agent(a)


def run_domain(sdk_dir, a, ca, *args):
    env = run_domain_env(a.gateway_addr, ca, a.api_key)
    r = subprocess.run(["node", "--require", str(HERE / "js" / "resolve-domain.cjs"), "domain.mjs", *args],
                       cwd=str(sdk_dir), env=env, capture_output=True, text=True, timeout=180,
                       stdin=subprocess.DEVNULL)
    outs = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    for o in outs:
        a.client.created.extend(o.get("created", []))
    assert r.returncode == 0, f"node domain.mjs exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return outs[-1]


@pytest.mark.parametrize("line", SDK_LINES)
def test_domain_tls(sdk_dirs, tls_agent, certs, line):
    out = run_domain(sdk_dirs[line], tls_agent, certs["ca"])
    assert out["code"] == "42"  # runCode at https://49999-<id>.<domain>, state kept
    assert out["cmd"] == "over-tls\n"  # envd at https://49983-<id>.<domain>
    assert out["read"] == "secret over tls\n"
    assert out["exists"] is False
    assert out["host"].startswith("8080-") and out["host"].endswith("." + DOMAIN)
    assert out["listed"] == [True]
    assert out["killed"] is True


@pytest.mark.parametrize("line", SDK_LINES)
def test_domain_untrusted_certificate_refused(sdk_dirs, tls_agent, certs, line):
    """With another CA trusted, the SDK refuses the gateway's certificate and
    nothing is made."""
    before = sorted(s["id"] for s in tls_agent.client.get("/v1/sandboxes").json()["sandboxes"])
    out = run_domain(sdk_dirs[line], tls_agent, certs["other_ca"], "refused")
    assert out["refused"] is True, out
    assert "CERT" in out["error"] or "SIGNATURE" in out["error"], out
    assert sorted(s["id"] for s in tls_agent.client.get("/v1/sandboxes").json()["sandboxes"]) == before


def test_domain_flags_refused():
    """TLS flags without --gateway-listen, or a certificate without its key,
    are a usage error before anything starts."""
    for args in (["--gateway-domain", DOMAIN],
                 ["--gateway-listen", "127.0.0.1:0", "--gateway-tls-cert", "/nonexistent"]):
        r = subprocess.run([str(AGENT_BIN), "--standalone", *args], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2, r
        assert "gateway" in r.stderr


def test_domain_unreadable_certificate(templates_dir, tmp_path):
    """A certificate file that cannot be read stops the agent's start with a
    clear error (the gateway does not come up without TLS)."""
    a = Agent("compat-badtls", templates_dir,
              extra_args=["--gateway-listen", "127.0.0.1:0", "--gateway-tls-cert", str(tmp_path / "missing.pem"),
                          "--gateway-tls-key", str(tmp_path / "missing.key")])
    with pytest.raises(RuntimeError):
        a.start()
    try:
        assert "TLS certificate" in a.log_tail(lines=200)
    finally:
        a.teardown()


def test_domain_tls_upgrade_relay(tls_agent, certs):
    """The port proxy's Upgrade relay through the TLS listener: a request for
    https://8090-<id>.<domain> with Upgrade gets the sandbox server's 101, then
    bytes both ways (libmicrohttpd pumps TLS through a socket pair)."""
    import socket
    import ssl
    import time


    sid = tls_agent.client.create(template="default")["id"]
    r = tls_agent.client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["python3", "-c", UPGRADE_ECHO_SERVER, "8090"], "background": True})
    assert r.status == 201, r
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    host = f"8090-{sid}.{DOMAIN}"

    def upgrade():
        raw = socket.create_connection((tls_agent.gateway_addr, 443), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname=host)
        s.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n".encode())
        return read_head(s), s

    deadline = time.monotonic() + 20  # until the server listens (502 before), bounded
    while True:
        head, s = upgrade()
        if head.startswith(b"HTTP/1.1 101") or time.monotonic() > deadline:
            break
        s.close()
        time.sleep(0.1)
    with s:
        assert head.startswith(b"HTTP/1.1 101"), head
        msg = b"ping through tls"
        s.sendall(msg)
        assert read_exactly(s, len(msg)) == msg
    assert tls_agent.client.delete(f"/v1/sandboxes/{sid}").status == 204
