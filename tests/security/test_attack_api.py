"""Attacks on the agent's HTTP API by a caller: ids and file paths that try
to leave their place, garbage and hostile JSON, wrong and misplaced tokens,
a token in the query string (never honoured, never logged), method confusion
and conflicting framing headers. After each the agent is alive, answers a
clear error, and nothing is left behind (the common leak check)."""

import pytest

from conftest import assert_error, rand_suffix, raw_unix, start_tcp_agent, stop_agent, tcp_client


@pytest.fixture(scope="module")
def tcp_agent(templates_dir, tmp_path_factory):
    a = start_tcp_agent("secapi", templates_dir, tmp_path_factory)
    yield a
    stop_agent(a)


BAD_IDS = ["..", "../..", "..%2f..%2fetc", "%2e%2e", "a/../../etc", "a%00b", "A" * 300, "x%20y", "-leading",
           "UPPER", ".hidden", "id;rm", "id\\x"]


@pytest.mark.parametrize("sid", BAD_IDS)
def test_hostile_ids_are_refused_and_create_nothing(client, agent, sid):
    """A create with a hostile caller-chosen id is 400; the same id in every
    per-sandbox route is 400/404/405, never a path on the host."""
    assert_error(client.post("/v1/sandboxes", {"template": "host", "id": sid}), 400)
    for method, sub in (("GET", ""), ("DELETE", ""), ("POST", "/exec"), ("GET", "/files?path=/etc/passwd"),
                        ("POST", "/pause"), ("GET", "/metrics")):
        r = client.request(method, f"/v1/sandboxes/{sid}{sub}", body={"cmd": ["true"]} if method == "POST" else None)
        assert r.status in (400, 404, 405), (method, sid, sub, r)
    assert client.list_ids() == []
    assert agent.sandbox_dirs() == []
    assert agent.alive()


def test_template_names_cannot_leave_the_templates_dir(client, agent):
    """Template names that try to leave the templates directory: 400/404."""
    for t in ("../host", "/etc", "host/../../..", "..", "%2e%2e/host", "host/", "./host"):
        r = client.post("/v1/sandboxes", {"template": t})
        assert r.status in (400, 404), (t, r)
    assert client.list_ids() == []


def test_template_name_with_a_nul_is_refused(client):
    """A NUL inside a JSON string must not cut the name short."""
    r = client.post("/v1/sandboxes", {"template": "host\x00../../etc"})
    assert_error(r, 400)
    assert r.json()["message"] == "a string in the request body contains \\u0000"
    assert client.list_ids() == []


@pytest.mark.parametrize("body", [
    b"[" * 200000 + b"]" * 200000,
    b'{"template": "host", "template": "../../etc"}',
    b'{"template": "host", "memory": 1e999}',
    b'{"template": "host", "memory": -1}',
    b'{"template": "host", "cpu": NaN}',
    b'{"template": "host", "pids": 18446744073709551617}',
    b'\x00\x01\x02',
    b'{"template": "host"',
    b'"host"',
], ids=["deep-nesting", "duplicate-key", "overflow-float", "negative", "nan",
        "u64-overflow", "binary", "truncated", "not-an-object"])
def test_garbage_json_is_a_clear_400(client, agent, body):
    """Hostile JSON bodies: a 400 with a JSON error (no crash, no hang), and
    no sandbox made from them; the agent still answers."""
    r = client.request("POST", "/v1/sandboxes", raw=body, headers={"Content-Type": "application/json"})
    if r.status == 201:
        # a duplicate key may be taken last-wins only if the result is sane
        assert b"duplicate" not in body or r.json()["template"] == "host", r
        pytest.fail(f"a hostile body made a sandbox: {r}")
    assert_error(r, 400)
    assert client.get("/healthz").status == 200
    assert client.list_ids() == []


def test_invalid_utf8_gets_a_valid_json_error(client):
    """A template name with invalid UTF-8: a 400 whose body is valid JSON."""
    r = client.request("POST", "/v1/sandboxes", raw=b'{"template": "host\xff\xfe"}',
                       headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    assert r.json()["message"] == "request body is not valid UTF-8"
    assert client.list_ids() == []
    # A path echoed into a message (an id of any bytes) is made valid too.
    r = client.request("GET", "/v1/sandboxes/%ff%fe")
    assert_error(r, 404)


def test_wrong_tokens_are_401(tcp_agent):
    """Near-miss tokens (a prefix, one char more, other case, no scheme,
    twice, in another header) are each refused."""
    t = tcp_agent.token
    for auth in (t, "Bearer " + t[:-1], "Bearer " + t + "x", "Bearer " + t.upper(), "Basic " + t,
                 "Bearer  " + t + " " + t, "Bearer", ""):
        c = tcp_client(tcp_agent, None)
        r = c.request("GET", "/v1/sandboxes", headers={"Authorization": auth})
        assert r.status == 401, (auth[:12], r)
    c = tcp_client(tcp_agent, None)
    for h in ("X-Api-Key", "X-Auth-Token", "Proxy-Authorization", "Cookie"):
        assert c.request("GET", "/v1/sandboxes", headers={h: t}).status == 401, h
    assert tcp_client(tcp_agent, t).get("/v1/sandboxes").status == 200


def test_token_in_query_string_is_not_honoured_or_logged(tcp_agent):
    """The token as ?token=, ?access_token=, ?api_key=: 401, and the token's
    value is in no line of the agent's log (nor is a wrong one sent the same
    way)."""
    t = tcp_agent.token
    wrong = "wrongtok" + rand_suffix(16)
    c = tcp_client(tcp_agent, None)
    before = tcp_agent.log_size()
    for q in ("token", "access_token", "api_key", "key"):
        for v in (t, wrong):
            r = c.request("GET", f"/v1/sandboxes?{q}={v}")
            assert r.status == 401, (q, r)
            assert t.encode() not in r.body and wrong.encode() not in r.body
    ok = tcp_client(tcp_agent, t)
    r = ok.request("GET", f"/v1/sandboxes/nosuch{rand_suffix()}?token={wrong}")
    assert r.status == 404 and wrong.encode() not in r.body, r
    log = tcp_agent.log.read_bytes()[before:]
    assert t.encode() not in log and wrong.encode() not in log, "a token from a query string was logged"


def test_method_override_headers_are_ignored(client, sandbox):
    """X-HTTP-Method-Override and friends on a GET do not delete; lower-case,
    unknown and TRACE methods are refused; the sandbox survives."""
    sid = sandbox["id"]
    for h in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        r = client.request("GET", f"/v1/sandboxes/{sid}", headers={h: "DELETE"})
        assert r.status == 200, (h, r)
    r = client.request("POST", f"/v1/sandboxes/{sid}?_method=DELETE", body={})
    assert r.status in (400, 404, 405), r
    for m in ("delete", "TRACE", "PROPFIND", "DELETEX"):
        r = client.request(m, f"/v1/sandboxes/{sid}")
        assert r.status in (400, 405, 501), (m, r)
    r = client.request("HEAD", f"/v1/sandboxes/{sid}")
    assert r.status in (200, 405), r
    assert client.sandbox(sid).status == 200
    assert client.sh(sid, "echo alive") == "alive\n"


SMUGGLE = {
    "cl-then-te": "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "te-then-cl": "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "two-cl": "Content-Length: 5\r\nContent-Length: 40\r\n",
    "te-list": "Transfer-Encoding: chunked, identity\r\n",
}
@pytest.mark.parametrize("framing", list(SMUGGLE))
def test_request_smuggling_cannot_delete(client, agent, sandbox, framing):
    """A request with conflicting framing headers whose body hides a second
    request, DELETE of the sandbox, on the same connection: the hidden
    request is never run (the request is refused and the connection closed)."""
    sid = sandbox["id"]
    hidden = f"DELETE /v1/sandboxes/{sid} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    head = (f"POST /v1/sandboxes/{sid}/timeout HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: application/json\r\n{SMUGGLE[framing]}\r\n").encode()
    raw_unix(agent, head + b"0\r\n\r\n" + hidden, timeout=5)
    assert client.sandbox(sid).status == 200, f"smuggled DELETE ran with {framing}"
    assert agent.alive()


def test_header_bombs_are_refused(client, agent):
    """A 1 MiB header line and 10,000 headers: refused (4xx) or the
    connection closed; the agent stays up and small."""
    big = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    many = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(10000)) + b"\r\n"
    for req in (big, many):
        out = raw_unix(agent, req)
        assert not out or out.split(b" ", 2)[1][:1] == b"4", out[:200]
    assert agent.alive() and client.get("/healthz").status == 200


@pytest.mark.parametrize("path", ["/etc/../../../../etc/shadow", "relative/../../x", "/tmp/\x00/x", "",
                                  "/" + "a" * 5000, "/proc/1/root/etc/shadow"])
def test_hostile_file_paths_give_nothing_of_the_host(client, sandbox, path):
    """Odd file paths for the files API: an error or a file of the sandbox,
    never a host file (the host's /etc/shadow is root's, with hashes)."""
    from urllib.parse import quote
    r = client.get(f"/v1/sandboxes/{sandbox['id']}/files?path={quote(path, safe='')}")
    assert r.status in (200, 400, 403, 404, 414), (path, r)
    if r.status == 200:
        with open("/etc/shadow", "rb") as f:
            host = f.read()
        assert r.body != host or not host, "the host's /etc/shadow came back"
    else:
        assert r.content_type.startswith("application/json"), r
