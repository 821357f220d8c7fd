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

from conftest import COMPAT_DIR, HERE, REPO

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
        r = subprocess.run(["node", "mcp.mjs", kind, scenario, *target], cwd=str(mcp_dir), capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        outs = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        for o in outs:
            agent.client.created.extend(o.get("created", []))
        assert r.returncode == 0, f"node mcp.mjs {kind} {scenario} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
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


def test_tools_and_schemas(mcp):
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
    assert rc["input"]["properties"]["language"]["enum"] == ["python", "javascript", "bash"]
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
    assert wait_gone(agent, [s["sandbox_id"]]) == []  # the session ended: its sandbox went


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


def post(agent, body, headers=None, method="POST"):
    url = f"http://127.0.0.1:{agent.gateway_port}/mcp"
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
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
