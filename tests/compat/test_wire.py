"""The gateway's answers to what the SDKs would never send: wrong or missing
access tokens, unknown sandboxes and procedures, the protobuf codec, a broken
envelope, bad create bodies. Plain HTTP against the gateway; each answer must
have the right status and error body, and leave nothing behind."""

import json
import struct

import pytest
from conftest import UPGRADE_ECHO_SERVER, read_exactly, read_head, refresh_gateway_port, wait_for

pytestmark = pytest.mark.slow

KEY = {}  # the suite's API key, set by use_the_suites_key


@pytest.fixture(autouse=True)
def use_the_suites_key(agent):
    KEY["X-API-KEY"] = agent.api_key


def envd(sid, token=None, port=49983, **extra):
    h = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": str(port)}
    if token is not None:
        h["X-Access-Token"] = token
    h.update(extra)
    return h


def envelope(obj, flags=0):
    data = json.dumps(obj).encode()
    return struct.pack(">BI", flags, len(data)) + data


def frames(body):
    out = []
    while body:
        flags, n = struct.unpack(">BI", body[:5])
        out.append((flags, json.loads(body[5:5 + n])))
        body = body[5 + n:]
    return out


@pytest.fixture
def sandbox(agent):
    gw = agent.gateway
    r = gw.post("/v2/sandboxes", {"templateID": "base", "timeout": 120}, headers=KEY)
    assert r.status == 201, r
    sbx = r.json()
    agent.client.created.append(sbx["sandboxID"])
    yield sbx
    agent.gateway.delete(f"/sandboxes/{sbx['sandboxID']}", headers=KEY)  # the port may have changed


def test_control_plane_needs_an_api_key(agent):
    r = agent.gateway.get("/v2/sandboxes")
    assert r.status == 401
    assert r.json()["code"] == 401


def test_create_refuses_bad_bodies(agent):
    gw = agent.gateway
    for body, word in [({}, "templateID"), ({"templateID": "base", "timeout": 0}, "timeout"),
                       ({"templateID": "base", "bogus": 1}, "bogus"),
                       ({"templateID": "base", "metadata": {"sandpit.dev/x": "1"}}, "sandpit.dev/")]:
        r = gw.post("/v2/sandboxes", body, headers=KEY)
        assert r.status == 400, (body, r)
        assert r.json()["code"] == 400 and word in r.json()["message"], r.json()
    r = gw.post("/v2/sandboxes", raw=b"{not json", headers=dict(KEY, **{"Content-Type": "application/json"}))
    assert r.status == 400
    assert agent.client.get("/v1/sandboxes").json()["sandboxes"] == []


def test_unknown_sandbox_is_404_with_e2b_body(agent):
    gw = agent.gateway
    for method, path in [("GET", "/sandboxes/nosuchsandbox"), ("DELETE", "/sandboxes/nosuchsandbox"),
                         ("POST", "/sandboxes/nosuchsandbox/pause"), ("GET", "/sandboxes/nosuchsandbox/metrics")]:
        r = gw.request(method, path, headers=KEY, body={} if method == "POST" else None)
        assert r.status == 404, (method, path, r)
        assert r.json()["code"] == 404
    r = gw.request("POST", "/filesystem.Filesystem/Stat", raw=b'{"path":"/"}',
                   headers=envd("nosuchsandbox", **{"Content-Type": "application/json"}))
    assert r.status == 404 and r.json()["code"] == "not_found", r


def test_access_token_is_required_on_envd_and_execute(agent, sandbox):
    gw, sid, tok = agent.gateway, sandbox["sandboxID"], sandbox["envdAccessToken"]
    assert len(tok) >= 32
    ok = gw.get("/files?path=/etc/hostname", headers=envd(sid, tok))
    assert ok.status == 200
    for bad in (None, "wrong", tok[:-1]):
        r = gw.get("/files?path=/etc/hostname", headers=envd(sid, bad))
        assert r.status == 401, (bad, r)
        assert r.json()["code"] == 401
        r = gw.request("POST", "/filesystem.Filesystem/Stat", raw=b'{"path":"/"}',
                       headers=envd(sid, bad, **{"Content-Type": "application/json"}))
        assert r.status == 401 and r.json()["code"] == "unauthenticated", r
        r = gw.post("/execute", {"code": "1"}, headers=envd(sid, bad, port=49999))
        assert r.status == 401, r
    # The token is not a label: the native API never shows it.
    native = agent.client.get(f"/v1/sandboxes/{sid}").json()
    assert tok not in json.dumps(native)
    assert native["labels"].get("sandpit.dev/e2b-secure") == "true"


def test_connect_protocol_errors(agent, sandbox):
    gw, sid, tok = agent.gateway, sandbox["sandboxID"], sandbox["envdAccessToken"]
    stream_ct = {"Content-Type": "application/connect+json"}
    # The protobuf codec: unimplemented, saying so.
    r = gw.request("POST", "/filesystem.Filesystem/Stat", raw=b"\x0a\x01/",
                   headers=envd(sid, tok, **{"Content-Type": "application/proto"}))
    assert r.status == 501 and r.json()["code"] == "unimplemented" and "JSON" in r.json()["message"]
    # An unknown procedure.
    r = gw.request("POST", "/process.Process/Nope", raw=b"{}",
                   headers=envd(sid, tok, **{"Content-Type": "application/json"}))
    assert r.status in (404, 501) and r.json()["code"] == "unimplemented"
    # A cut envelope on a stream: 200 with an error end-stream frame only.
    r = gw.request("POST", "/process.Process/Start", raw=envelope({"process": {"cmd": "true"}})[:-3],
                   headers=envd(sid, tok, **stream_ct))
    assert r.status == 200
    f = frames(r.body)
    assert f == [(2, {"error": {"code": "invalid_argument", "message": f[0][1]["error"]["message"]}})]
    # A stream that runs: start first, the end event, then the end-stream frame.
    r = gw.request("POST", "/process.Process/Start",
                   raw=envelope({"process": {"cmd": "/bin/sh", "args": ["-c", "echo hi; exit 4"]}}),
                   headers=envd(sid, tok, **stream_ct))
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/connect+json")
    f = frames(r.body)
    assert f[0][0] == 0 and "pid" in f[0][1]["event"]["start"]
    assert {"event": {"data": {"stdout": "aGkK"}}} in [m for _, m in f]
    assert f[-2][1]["event"]["end"]["exitCode"] == 4
    assert f[-1] == (2, {})
    # A command that cannot start: an error end-stream frame, not a broken stream.
    r = gw.request("POST", "/process.Process/Start",
                   raw=envelope({"process": {"cmd": "/no/such/binary"}}), headers=envd(sid, tok, **stream_ct))
    assert r.status == 200
    f = frames(r.body)
    assert f[-1][0] == 2 and f[-1][1]["error"]["code"] == "invalid_argument"
    # A watch of a path that does not exist: an error end-stream frame.
    r = gw.request("POST", "/filesystem.Filesystem/WatchDir", raw=envelope({"path": "/no/such/dir"}),
                   headers=envd(sid, tok, **stream_ct))
    assert r.status == 200
    f = frames(r.body)
    assert len(f) == 1 and f[0][0] == 2 and f[0][1]["error"]["code"] == "not_found", f


def unary(gw, sid, tok, method, body):
    r = gw.request("POST", f"/filesystem.Filesystem/{method}", raw=json.dumps(body).encode(),
                   headers=envd(sid, tok, **{"Content-Type": "application/json"}))
    return r.status, r.json()


def test_polling_watchers(agent, sandbox):
    """CreateWatcher / GetWatcherEvents / RemoveWatcher (the Python SDK's
    watch_dir): events gathered between polls, drained by each poll; a
    watcher belongs to its sandbox; bad requests get Connect errors."""
    gw, sid, tok = agent.gateway, sandbox["sandboxID"], sandbox["envdAccessToken"]
    st, out = unary(gw, sid, tok, "MakeDir", {"path": "/home/user/w"})
    assert st == 200, out
    st, out = unary(gw, sid, tok, "CreateWatcher", {"path": "/home/user/w", "recursive": False})
    assert st == 200 and out["watcherId"], out
    wid = out["watcherId"]
    st, out = unary(gw, sid, tok, "MakeDir", {"path": "/home/user/w/sub"})
    assert st == 200, out
    r = gw.request("POST", "/files?path=/home/user/w/f.txt", raw=b"hello",
                   headers=envd(sid, tok, **{"Content-Type": "application/octet-stream"}))
    assert r.status == 200, r
    seen = []

    def got_both():
        st, out = unary(gw, sid, tok, "GetWatcherEvents", {"watcherId": wid})
        assert st == 200, out
        seen.extend(out.get("events", []))
        names = {(e["name"], e["type"]) for e in seen}
        return ("sub", "EVENT_TYPE_CREATE") in names and ("f.txt", "EVENT_TYPE_CREATE") in names
    wait_for(got_both, 30, what="both creates polled")
    # drained: what was polled is not answered again (the proto's snake_case name works too)
    st, out = unary(gw, sid, tok, "GetWatcherEvents", {"watcher_id": wid})
    assert st == 200 and not [e for e in out.get("events", []) if e["name"] == "sub"], out

    # another sandbox does not see this one's watcher
    r = gw.post("/v2/sandboxes", {"templateID": "base", "timeout": 120}, headers=KEY)
    assert r.status == 201, r
    other = r.json()
    agent.client.created.append(other["sandboxID"])
    st, out = unary(gw, other["sandboxID"], other["envdAccessToken"], "GetWatcherEvents", {"watcherId": wid})
    assert st == 404 and out["code"] == "not_found", out
    st, out = unary(gw, other["sandboxID"], other["envdAccessToken"], "RemoveWatcher", {"watcherId": wid})
    assert st == 404 and out["code"] == "not_found", out
    assert gw.delete(f"/sandboxes/{other['sandboxID']}", headers=KEY).status == 204

    st, out = unary(gw, sid, tok, "RemoveWatcher", {"watcherId": wid})
    assert st == 200 and out == {}, out
    st, out = unary(gw, sid, tok, "GetWatcherEvents", {"watcherId": wid})
    assert st == 404 and out["code"] == "not_found", out
    # bad input
    st, out = unary(gw, sid, tok, "CreateWatcher", {"path": "/no/such/dir"})
    assert st == 404 and out["code"] == "not_found", out
    st, out = unary(gw, sid, tok, "CreateWatcher", {})
    assert st == 400 and out["code"] == "invalid_argument", out
    st, out = unary(gw, sid, tok, "GetWatcherEvents", {})
    assert st == 400 and out["code"] == "invalid_argument", out
    st, out = unary(gw, sid, tok, "GetWatcherEvents", {"watcherId": "nosuchwatcher"})
    assert st == 404 and out["code"] == "not_found", out


def test_a_watcher_ends_with_its_directory(agent, sandbox):
    """When the watched directory goes, the watcher's stream ends: a poll
    answers what it still held, then not_found with the reason, once."""
    gw, sid, tok = agent.gateway, sandbox["sandboxID"], sandbox["envdAccessToken"]
    assert unary(gw, sid, tok, "MakeDir", {"path": "/home/user/gone"})[0] == 200
    st, out = unary(gw, sid, tok, "CreateWatcher", {"path": "/home/user/gone"})
    assert st == 200, out
    wid = out["watcherId"]
    assert unary(gw, sid, tok, "Remove", {"path": "/home/user/gone"})[0] == 200

    def ended():
        st, out = unary(gw, sid, tok, "GetWatcherEvents", {"watcherId": wid})
        assert st in (200, 404), out
        return st == 404
    wait_for(ended, 30, what="the watcher to end with its directory")


def test_v1_create_is_not_secure_by_default(agent):
    """v1 (e2b 1.x, @e2b/mcp-server) POST /sandboxes: no token unless secure."""
    gw = agent.gateway
    body = {"autoPause": False, "templateID": "code-interpreter-v1", "timeout": 300,
            "allow_internet_access": True}
    r = gw.post("/sandboxes", body, headers=KEY)
    assert r.status == 201, r
    sid = r.json()["sandboxID"]
    agent.client.created.append(sid)
    try:
        assert r.json().get("envdAccessToken") is None
        # No token to give: envd answers without one.
        assert gw.get("/health", headers=envd(sid)).status == 204
        assert gw.get("/files?path=/etc/hostname", headers=envd(sid)).status == 200
        listed = gw.get("/sandboxes", headers=KEY).json()
        assert [s["sandboxID"] for s in listed] == [sid]
    finally:
        assert gw.delete(f"/sandboxes/{sid}", headers=KEY).status == 204


def test_access_token_survives_an_agent_restart(agent, sandbox):
    """The tokens are kept in a 0600 file on the agent's state dir, so a
    restarted agent (the sandboxes survive it) still takes them, and still
    refuses a wrong one."""
    sid, tok = sandbox["sandboxID"], sandbox["envdAccessToken"]
    f = agent.state_dir / "gateway-tokens"
    assert f.stat().st_mode & 0o777 == 0o600
    agent.restart()
    refresh_gateway_port(agent)
    gw = agent.gateway
    assert gw.get("/files?path=/etc/hostname", headers=envd(sid, tok)).status == 200
    assert gw.get("/files?path=/etc/hostname", headers=envd(sid, "wrong")).status == 401
    assert tok not in agent.log_tail(lines=10000)


def upgrade(port, sid, sandbox_port):
    """A raw Upgrade request to the gateway: (the response head, the socket)."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n"
               f"E2b-Sandbox-Id: {sid}\r\nE2b-Sandbox-Port: {sandbox_port}\r\n\r\n").encode())
    return read_head(s), s


def test_port_proxy_upgrade_and_errors(agent, sandbox):
    import time
    sid = sandbox["sandboxID"]
    r = agent.client.post(f"/v1/sandboxes/{sid}/exec",
                          {"cmd": ["python3", "-c", UPGRADE_ECHO_SERVER, "8090"], "background": True})
    assert r.status in (200, 201, 202), r
    # Until the server listens (502 before), bounded.
    deadline = time.monotonic() + 20
    while True:
        head, s = upgrade(agent.gateway_port, sid, 8090)
        if head.startswith(b"HTTP/1.1 101") or time.monotonic() > deadline:
            break
        s.close()
        time.sleep(0.1)
    with s:
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"upgrade: echo" in head.lower()
        s.sendall(b"ping through the proxy")
        assert read_exactly(s, len(b"ping through the proxy")) == b"ping through the proxy"
    # A port of an unknown sandbox: 404 with E2B's body; nothing listening: 502.
    gw = agent.gateway
    r = gw.request("GET", "/", headers={"E2b-Sandbox-Id": "nosuchsandbox0000000", "E2b-Sandbox-Port": "8090"})
    assert r.status == 404 and r.json()["code"] == 404, r
    r = gw.request("GET", "/", headers={"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "8099"})
    assert r.status == 502, r
