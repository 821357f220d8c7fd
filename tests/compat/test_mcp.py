"""sandpit's MCP server driven by the official MCP TypeScript SDK client
(@modelcontextprotocol/sdk, pinned in setup.sh), over stdio (`sandpit mcp`
against the agent's socket) and over Streamable HTTP (the gateway's /mcp),
plus the HTTP transport's own rules checked on the wire."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import COMPAT_DIR, HERE, REPO, make_key

pytestmark = pytest.mark.slow

CLI_BIN = REPO / "build" / "bin" / "sandpit"
# stdio: `sandpit mcp` on the agent's socket; http: the SDK on the gateway's
# /mcp; bridge: `sandpit mcp --url` relaying stdio to the gateway's /mcp.
TRANSPORTS = ["stdio", "http", "bridge"]


@pytest.fixture(scope="session")
def mcp_dir(sdk_dirs):
    """A folder with mcp/*.mjs and the MCP SDK's node_modules (setup.sh installed it)."""
    d = Path(tempfile.mkdtemp(prefix="sandpit-compat-mcp-"))
    os.symlink(COMPAT_DIR / "mcp" / "node_modules", d / "node_modules")
    for f in (HERE / "mcp").glob("*.mjs"):
        shutil.copy(f, d / f.name)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def session_sandboxes(agent):
    """The agent's sandboxes that an MCP session made (its label)."""
    return [s["id"] for s in agent.client.get("/v1/sandboxes").json()["sandboxes"]
            if "sandpit.dev/mcp-session" in (s.get("labels") or {})]


@pytest.fixture(params=TRANSPORTS)
def mcp(request, mcp_dir, agent):
    """Runs mcp.mjs SCENARIO over one transport; answers its JSON."""
    kind = request.param

    def run(scenario, timeout=180):
        url = f"http://127.0.0.1:{agent.gateway_port}/mcp"
        target = {"stdio": [str(CLI_BIN), f"unix://{agent.socket}"], "http": [url],
                  "bridge": [str(CLI_BIN), url]}[kind]
        # The gateway takes API keys (conftest made the suite's): http and
        # the bridge send it; stdio talks to the agent's socket, which needs none.
        env = dict(os.environ, SANDPIT_API_KEY=agent.api_key, SANDPIT_AGENT_SOCKET=str(agent.socket))
        r = subprocess.run(["node", "mcp.mjs", kind, scenario, *target], cwd=str(mcp_dir), capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
        outs = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        for o in outs:
            agent.client.created.extend(o.get("created", []))
        assert r.returncode == 0, f"node mcp.mjs {kind} {scenario} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        # The session ended with the script: its sandbox goes (the gateway
        # deletes it after answering the session's end, so wait for that).
        left = wait_gone(agent, session_sandboxes(agent), timeout=30)
        assert not left, f"the session's sandboxes outlived it: {left}"
        return outs[-1]

    run.kind = kind
    return run


def wait_gone(agent, ids, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [i for i in ids if i in session_sandboxes(agent)]
        if not left:
            return []
        time.sleep(0.05)
    return left


LANGUAGES = ["python", "javascript", "typescript", "r", "java", "bash"]


def node_languages(agent):
    """run_code's languages as the agent's /v1/info has them: the union over
    its templates, all of them when a template lists none."""
    info = agent.client.get("/v1/info").json()
    lists = [info["template_languages"].get(t) for t in info["templates"]]
    return [l for l in LANGUAGES if any(ls is None or l in ls for ls in lists)]


def test_tools_and_schemas(mcp, agent):
    out = mcp("tools")
    assert out["server"]["name"] == "sandpit"
    tools = out["tools"]
    assert set(tools) == {"create_sandbox", "list_sandboxes", "kill_sandbox", "set_timeout", "pause_sandbox",
                          "resume_sandbox", "run_code", "run_command", "read_file", "write_file", "list_files",
                          "download_files", "get_metrics"}
    for name, t in tools.items():
        assert t["input"]["type"] == "object", name
        assert t["annotations"] is not None and "readOnlyHint" in t["annotations"], name
    rc = tools["run_code"]
    assert rc["input"]["required"] == ["code"]
    # The union of what the node's templates list (default, host, code-interpreter): all six here.
    assert rc["input"]["properties"]["language"]["enum"] == node_languages(agent)
    assert rc["output"]["properties"]["stdout"]["type"] == "string"
    assert tools["read_file"]["annotations"]["readOnlyHint"] is True
    assert tools["read_file"]["output"] is None  # text or image content: not structured
    assert tools["kill_sandbox"]["annotations"]["destructiveHint"] is True
    assert tools["list_sandboxes"]["output"]["required"] == ["sandboxes"]
    assert out["ping"] == {}


def test_run_python_text_and_image(mcp, agent):
    out = mcp("code")
    assert out["isError"] is False
    assert "hello from mcp" in out["text"] and "42" in out["text"]
    assert out["images"] == [{"mimeType": "image/png", "magic": "89504e470d0a1a0a"}]
    s = out["structured"]
    assert s["stdout"] == "hello from mcp\n"
    assert any(r["is_main_result"] and r["text"] == "42" for r in s["results"])
    assert any("png" in r["formats"] for r in s["results"])
    assert out["state"] == "42"
    assert out["codeError"] == {"isError": True, "name": "ZeroDivisionError"}
    assert out["noR"]["isError"] is True, out["noR"]
    # Refused before the session's sandbox is made (the node's /v1/info lists the
    # template's languages), else by the agent (its template's list, or the kernel).
    assert ("(template default) has no r: it runs" in out["noR"]["text"]
            or "this sandbox's template has no R" in out["noR"]["text"]), out["noR"]
    assert wait_gone(agent, [s["sandbox_id"]]) == []  # the session ended: its sandbox went


def test_run_code_languages_from_the_node(mcp, agent):
    info = agent.client.get("/v1/info").json()
    default = info["template_languages"]["default"]
    assert "r" not in default  # the test needs a language the session's template lacks
    before = set(agent.client.list_ids())
    out = mcp("languages")
    assert out["enum"] == node_languages(agent)
    assert f"default: {', '.join(default)}" in out["description"], out["description"]
    assert f"This session's sandbox (template default) runs {', '.join(default)}." in out["description"]
    # The unlisted language: a tool error naming what runs, and no sandbox made for it.
    assert out["noR"]["isError"] is True, out["noR"]
    assert "(template default) has no r: it runs " + json.dumps(default, separators=(",", ":")) in out["noR"]["text"]
    assert f"default: {', '.join(default)}" in out["noR"]["text"]
    assert set(out["agentSandboxes"]) == before, out["agentSandboxes"]
    assert out["sessionSandboxes"] == 0
    # A listed language still runs.
    assert out["bash"]["isError"] is False and out["bash"]["text"].strip() == "42", out["bash"]
    assert wait_gone(agent, [out["bash"]["sandbox"]]) == []


def test_write_then_read(mcp):
    out = mcp("files")
    assert out["write"]["path"] == "/home/user/mcp/a.txt" and out["write"]["size"] == 12
    assert out["read"] == "hello files\n"
    assert out["image"] == [{"type": "image", "mimeType": "image/png", "same": True}]
    assert out["list"] == ["a.txt:file", "dot.png:file"]
    assert out["download"] == {"mimeType": "application/gzip", "gzip": "1f8b"}
    assert out["missing"]["isError"] is True and "nope.txt" in out["missing"]["text"]


def test_progress_then_cancel(mcp, agent):
    out = mcp("cancel")
    assert out["outcome"] == "aborted"
    assert out["progress"] >= 3
    assert out["progressMessage"].startswith("tick-")
    assert out["progressIncreasing"] is True
    assert out["left"] == "0"  # notifications/cancelled killed the command
    assert wait_gone(agent, [out["sandbox"]]) == []


def test_bad_arguments_are_tool_errors(mcp, agent):
    before = set(session_sandboxes(agent))
    out = mcp("badarg")
    assert out["bad"]["isError"] is True and "'code' must be a string" in out["bad"]["text"]
    assert out["unknownArg"]["isError"] is True and "unknown argument 'bogus'" in out["unknownArg"]["text"]
    assert out["noSandbox"]["isError"] is True and "not found" in out["noSandbox"]["text"]
    assert out["unknownTool"]["code"] == -32602  # a protocol error, not a tool result
    assert out["sessionSandboxes"] == 0
    assert set(session_sandboxes(agent)) == before  # bad input made nothing


def test_sandbox_lifecycle(mcp):
    out = mcp("lifecycle")
    assert out["made"]["state"] == "running" and out["made"]["session"] is False
    assert out["made"]["metadata"]["run"].startswith("mcp-")
    assert out["listed"] == [True]
    assert out["env"] == "yes\n"
    assert out["timeoutMoved"] is True
    assert out["paused"] == "paused"
    assert out["whilePaused"]["isError"] is True and "resume_sandbox" in out["whilePaused"]["text"]
    assert out["resumed"] == "running"
    assert out["metrics"] is True
    assert out["killed"] is True
    assert out["killAgain"]["isError"] is True and "not found" in out["killAgain"]["text"]
    assert out["listedAfter"] == 0


def test_session_end_kills_its_sandbox(mcp, agent):
    out = mcp("session")
    assert out["stdout"] == "42\n"
    if mcp.kind == "http":
        assert out["terminated"] is True
    assert wait_gone(agent, [out["sandbox"]]) == []


# ---- the Streamable HTTP transport's rules, on the wire ----


def post(agent, body, headers=None, method="POST", key=True):
    """One request to /mcp, with the suite's API key unless key is False (or
    the given key instead, or headers naming X-API-KEY)."""
    url = f"http://127.0.0.1:{agent.gateway_port}/mcp"
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if key:
        h["X-API-KEY"] = agent.api_key if key is True else key
    h.update(headers or {})
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def test_http_transport_rules(agent):
    status, headers, body = post(agent, INIT)
    assert status == 200
    sid = headers["Mcp-Session-Id"]
    assert json.loads(body)["result"]["protocolVersion"] == "2025-03-26"
    s = {"Mcp-Session-Id": sid}
    assert post(agent, {"jsonrpc": "2.0", "method": "notifications/initialized"}, s)[0] == 202
    # A batch, in a 2025-03-26 session.
    status, _, body = post(agent, [{"jsonrpc": "2.0", "id": 2, "method": "ping"},
                                   {"jsonrpc": "2.0", "id": 3, "method": "no/such"}], s)
    answers = {a["id"]: a for a in json.loads(body)}
    assert answers[2]["result"] == {} and answers[3]["error"]["code"] == -32601
    # Malformed JSON: a JSON-RPC parse error.
    status, _, body = post(agent, b"{not json", s)
    assert status == 400 and json.loads(body)["error"]["code"] == -32700
    # No session, an unknown one, a wrong protocol version, a foreign Origin.
    assert post(agent, {"jsonrpc": "2.0", "id": 4, "method": "ping"})[0] == 400
    assert post(agent, {"jsonrpc": "2.0", "id": 4, "method": "ping"}, {"Mcp-Session-Id": "nope"})[0] == 404
    assert post(agent, {"jsonrpc": "2.0", "id": 4, "method": "ping"},
                {**s, "MCP-Protocol-Version": "1999-01-01"})[0] == 400
    status, _, _ = post(agent, INIT, {"Origin": "http://evil.example"})
    assert status == 403
    status, headers, _ = post(agent, INIT, {"Origin": "http://localhost:5173"})
    assert status == 200
    assert post(agent, None, {"Mcp-Session-Id": headers["Mcp-Session-Id"]}, method="DELETE")[0] == 204
    assert post(agent, INIT, {"Content-Type": "text/plain"})[0] == 415
    # No GET stream; DELETE ends the session, then it is unknown.
    assert post(agent, None, s, method="GET")[0] == 405
    assert post(agent, None, s, method="DELETE")[0] == 204
    assert post(agent, {"jsonrpc": "2.0", "id": 5, "method": "ping"}, s)[0] == 404


def test_http_sse_keepalive(agent):
    """A call silent for longer than the keepalive interval (15 s) gets SSE
    comments meanwhile, so clients and proxies keep the stream open."""
    status, headers, _ = post(agent, {**INIT, "params": {**INIT["params"], "protocolVersion": "2025-11-25"}})
    assert status == 200
    s = {"Mcp-Session-Id": headers["Mcp-Session-Id"]}
    try:
        status, headers, body = post(agent, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "run_command", "arguments": {"command": "sleep 20; echo done"}}}, s)
        assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
        text = body.decode()
        assert ": keepalive\n\n" in text
        answer = json.loads([l for l in text.splitlines() if l.startswith("data: ")][-1][6:])
        assert answer["result"]["structuredContent"]["stdout"] == "done\n"
    finally:
        assert post(agent, None, s, method="DELETE")[0] == 204


# ---- /mcp under API keys (docs/auth.md, docs/mcp.md) ----


def rpc(agent, sid, id_, method, params=None, key=True):
    """A JSON answer of one request in session sid (Accept without SSE)."""
    status, _, body = post(agent, {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}},
                           {"Mcp-Session-Id": sid, "Accept": "application/json"}, key=key)
    return status, json.loads(body) if body else None


def open_session(agent, key):
    """A session of the newest revision (structured results) with key."""
    status, headers, body = post(agent, {**INIT, "params": {**INIT["params"], "protocolVersion": "2025-11-25"}},
                                 key=key)
    assert status == 200, body
    sid = headers["Mcp-Session-Id"]
    assert post(agent, {"jsonrpc": "2.0", "method": "notifications/initialized"}, {"Mcp-Session-Id": sid},
                key=key)[0] == 202
    return sid


def test_http_without_or_with_a_wrong_key_is_401(agent):
    before = session_sandboxes(agent)
    for key in (False, "e2b_" + "0" * 40, "not-a-key"):
        status, headers, body = post(agent, INIT, key=key)
        assert status == 401, (key, status, body)
        err = json.loads(body)
        assert err["jsonrpc"] == "2.0" and err["error"]["code"] == -32600
        assert "API key" in err["error"]["message"]
        assert "Mcp-Session-Id" not in headers and headers.get("WWW-Authenticate", "").startswith("Bearer")
        # A tool call without a valid key makes nothing either.
        status, _, _ = post(agent, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "run_command", "arguments": {"command": "true"}}}, {"Mcp-Session-Id": "x"}, key=key)
        assert status == 401
    assert session_sandboxes(agent) == before
    # The key never reaches the log.
    assert "e2b_" + "0" * 40 not in agent.log_tail(lines=100000)


def test_session_bound_to_its_namespace(agent):
    """A key of namespace A: its MCP session sees only A's sandboxes, cannot
    touch B's, and B's key cannot use A's session."""
    key_a, key_b = make_key(agent, "mcp-a"), make_key(agent, "mcp-b")
    sid_a, sid_b = open_session(agent, key_a), open_session(agent, key_b)
    try:
        status, r = rpc(agent, sid_b, 2, "tools/call", {"name": "create_sandbox", "arguments": {"timeout": 120}},
                        key=key_b)
        assert status == 200 and not r["result"].get("isError"), r
        b_id = r["result"]["structuredContent"]["sandbox_id"]
        agent.client.created.append(b_id)
        assert agent.client.get(f"/v1/sandboxes/{b_id}").json()["labels"]["sandpit.dev/namespace"] == "mcp-b"
        # B's session sees it; A's does not, and cannot touch it.
        _, r = rpc(agent, sid_b, 3, "tools/call", {"name": "list_sandboxes", "arguments": {}}, key=key_b)
        assert b_id in [s["sandbox_id"] for s in r["result"]["structuredContent"]["sandboxes"]]
        _, r = rpc(agent, sid_a, 3, "tools/call", {"name": "list_sandboxes", "arguments": {}}, key=key_a)
        assert b_id not in [s["sandbox_id"] for s in r["result"]["structuredContent"]["sandboxes"]]
        for i, (tool, args) in enumerate([("run_command", {"command": "echo hi"}), ("get_metrics", {}),
                                          ("read_file", {"path": "/etc/hostname"}), ("kill_sandbox", {})]):
            _, r = rpc(agent, sid_a, 10 + i, "tools/call", {"name": tool, "arguments": {**args, "sandbox_id": b_id}},
                       key=key_a)
            assert r["result"]["isError"] is True, (tool, r)
            assert "not found" in r["result"]["content"][0]["text"], (tool, r)
        assert agent.client.get(f"/v1/sandboxes/{b_id}").status == 200
        # A's session with B's key (or none) is not there for it; with A's it is.
        assert rpc(agent, sid_a, 20, "ping", key=key_b)[0] == 404
        assert rpc(agent, sid_a, 21, "ping", key=False)[0] == 401
        assert post(agent, None, {"Mcp-Session-Id": sid_a}, method="DELETE", key=key_b)[0] == 404
        assert rpc(agent, sid_a, 22, "ping", key=key_a)[0] == 200
        # B kills its own.
        _, r = rpc(agent, sid_b, 4, "tools/call", {"name": "kill_sandbox", "arguments": {"sandbox_id": b_id}},
                   key=key_b)
        assert not r["result"].get("isError"), r
    finally:
        assert post(agent, None, {"Mcp-Session-Id": sid_a}, method="DELETE", key=key_a)[0] == 204
        assert post(agent, None, {"Mcp-Session-Id": sid_b}, method="DELETE", key=key_b)[0] == 204
