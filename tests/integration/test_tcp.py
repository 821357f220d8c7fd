"""The TCP listener: bearer token required on every request.

A second agent with its own state dir, cgroup parent and socket, listening on
127.0.0.1:<free port>."""

import pytest

from conftest import assert_error, start_tcp_agent, stop_agent, tcp_client


@pytest.fixture(scope="module")
def tcp_agent(templates_dir, tmp_path_factory):
    a = start_tcp_agent("tcp", templates_dir, tmp_path_factory)
    yield a
    stop_agent(a)


@pytest.mark.parametrize("path", ["/healthz", "/v1/info", "/v1/sandboxes"])
def test_missing_token_is_401(tcp_agent, path):
    assert_error(tcp_client(tcp_agent, None).get(path), 401)


@pytest.mark.parametrize("header", ["Bearer wrong-token", "Bearer ", "Basic dXNlcjpwYXNz", "{tok}", "Bearer {tok}x",
                                    "bearer-{tok}"])
def test_wrong_token_is_401(tcp_agent, header):
    c = tcp_client(tcp_agent, None)
    r = c.get("/v1/sandboxes", headers={"Authorization": header.format(tok=tcp_agent.token)})
    assert_error(r, 401)


def test_right_token_is_200(tcp_agent):
    c = tcp_client(tcp_agent, tcp_agent.token)
    r = c.get("/v1/sandboxes")
    assert r.status == 200, r
    assert r.json() == {"sandboxes": []}
    assert c.get("/healthz").status == 200


def test_unauthenticated_create_does_nothing(tcp_agent):
    c = tcp_client(tcp_agent, None)
    assert_error(c.post("/v1/sandboxes", {"template": "host"}), 401)
    assert tcp_client(tcp_agent, tcp_agent.token).list_ids() == []
    assert tcp_agent.leftovers() == []


def test_full_flow_over_tcp(tcp_agent):
    c = tcp_client(tcp_agent, tcp_agent.token)
    sid = c.create()["id"]
    r = c.exec(sid, shell="echo over-tcp")
    assert r.exit_code == 0 and r.stdout == "over-tcp\n", r
    # without the token nothing about it is reachable
    anon = tcp_client(tcp_agent, None)
    assert_error(anon.get(f"/v1/sandboxes/{sid}"), 401)
    assert_error(anon.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}), 401)
    assert_error(anon.delete(f"/v1/sandboxes/{sid}"), 401)
    assert c.sandbox(sid).status == 200
    assert c.delete(f"/v1/sandboxes/{sid}").status == 204
    assert tcp_agent.leftovers([sid], zombies=False) == []


def test_unix_socket_still_works(tcp_agent):
    r = tcp_agent.client.get("/v1/sandboxes")
    assert r.status == 200, r


def test_listens_on_loopback_only(tcp_agent):
    with open("/proc/net/tcp") as f:
        rows = [ln.split() for ln in f.read().splitlines()[1:]]
    port_hex = f"{tcp_agent.port:04X}"
    listening = [r[1] for r in rows if r[3] == "0A" and r[1].endswith(":" + port_hex)]
    assert listening == ["0100007F:" + port_hex], listening
