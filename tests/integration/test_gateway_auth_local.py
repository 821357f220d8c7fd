"""The gateway's authentication in local mode (docs/auth.md): with
--gateway-auth keys (the default) the TCP control plane takes only the API
keys of the key file (--gateway-key-file), read again when it changes; the
agent's unix socket needs none; no Kubernetes tokens without a cluster;
--gateway-auth none takes any key. (The E2B SDKs with real keys, revocation
and namespaces: tests/compat/test_auth.py; cluster mode:
test_gateway_auth_cluster.py.)"""

import os
import re
import stat
import subprocess

import pytest

from conftest import AGENT_BIN, REPO, Client, start_agent, stop_agent, wait_for

CLI = REPO / "build" / "bin" / "sandpit"


def gateway(a):
    found = wait_for(lambda: re.findall(r"gateway \(E2B API\) on \S+, tcp port (\d+)", a.log_tail(lines=100000)),
                     10, what="the gateway's port in the log")
    return Client(tcp=("127.0.0.1", int(found[-1])))


@pytest.fixture
def keyed(templates_dir, tmp_path):
    key_file = tmp_path / "keys"
    a = start_agent("gwkeys", templates_dir, extra_args=["--gateway-listen", "127.0.0.1:0",
                                                         "--gateway-key-file", str(key_file)])
    a.key_file = key_file
    a.gw = gateway(a)
    yield a
    stop_agent(a)


def keys(key_file, *args):
    return subprocess.run([str(CLI), "keys", "--key-file", str(key_file), *args], capture_output=True, text=True,
                          timeout=30)


def test_keys_from_the_key_file(keyed):
    gw = keyed.gw
    r = gw.get("/v2/sandboxes", headers={"X-API-KEY": "e2b_" + "0" * 40})
    assert r.status == 401 and "no API keys exist yet" in r.json()["message"]
    r = keys(keyed.key_file, "create", "--namespace", "dev", "--name", "laptop")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert stat.S_IMODE(os.stat(keyed.key_file).st_mode) == 0o600
    assert key not in keyed.key_file.read_text()
    assert gw.get("/v2/sandboxes", headers={"X-API-KEY": key}).status == 200
    assert gw.get("/v2/sandboxes").status == 401
    # the unix socket is its own boundary (its file permissions): no key there
    assert keyed.client.get("/v1/sandboxes").status == 200
    # no cluster: no Kubernetes tokens
    r = gw.get("/v2/sandboxes", headers={"Authorization": "Bearer some-token"})
    assert r.status == 401 and "no Kubernetes tokens" in r.json()["message"]
    assert keys(keyed.key_file, "revoke", "laptop").returncode == 0
    wait_for(lambda: gw.get("/v2/sandboxes", headers={"X-API-KEY": key}).status == 401, 10,
             what="the revocation")
    assert key not in keyed.log_tail(lines=100000)


def test_auth_none_takes_any_key(templates_dir):
    a = start_agent("gwnone", templates_dir, extra_args=["--gateway-listen", "127.0.0.1:0", "--gateway-auth", "none"])
    try:
        gw = gateway(a)
        assert gw.get("/v2/sandboxes", headers={"X-API-KEY": "anything"}).status == 200
        assert gw.get("/v2/sandboxes").status == 401
        assert "--gateway-auth none" in a.log_tail(lines=1000)  # said at start
    finally:
        stop_agent(a)


def test_a_bad_auth_mode_is_a_usage_error():
    r = subprocess.run([str(AGENT_BIN), "--standalone", "--gateway-auth", "open"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["sandpit-agent: bad --gateway-auth open (keys or none)"]
