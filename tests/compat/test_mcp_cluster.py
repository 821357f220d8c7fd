"""sandpit's MCP server in a cluster: the official MCP TypeScript SDK client
(mcp/mcp.mjs, as test_mcp.py drives it) against `/mcp` of the operator's
gateway (`sandpit-operator --gateway-listen`, the cluster backend), with a
real cluster-mode agent, on the fixture API server or, with SANDPIT_K8S=real
(`make test-k8s`), on a real kube-apiserver. Set up as test_cluster.py is
(its fixtures: the API server, the agent, the operator and the suite's API
key for namespace NS).

On top of the local suite's scenarios, what only a cluster has: the tools
reach the sandbox on its agent by the Sandbox's status.sandboxID, what MCP
makes is a Sandbox object (a session's own one labelled
sandpit.dev/mcp-session=SESSION, `kubectl get sbx -l`), a session's end
deletes that object, a key of namespace B neither sees nor touches NS's
sandboxes, and a ServiceAccount token's tools are authorised by RBAC in its
namespace."""

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import wait_for
from test_cluster import KEY, NS, NS_B, kube, made, make_key, node, operator, sa_token, sbx_obj  # noqa: F401
from test_mcp import CLI_BIN, INIT, mcp_dir  # noqa: F401

pytestmark = pytest.mark.slow

LABEL = "sandpit.dev/mcp-session"
# http: the SDK on the gateway's /mcp; bridge: `sandpit mcp --url` relaying
# stdio to it (stdio against an agent's socket is local mode: test_mcp.py).
TRANSPORTS = ["http", "bridge"]


def url(operator):
    return f"http://127.0.0.1:{operator.gateway_port}/mcp"


@pytest.fixture(params=TRANSPORTS)
def mcp(request, mcp_dir, operator, made):  # noqa: F811
    """Runs mcp.mjs SCENARIO over one transport against the operator's
    gateway with the suite's key (or key); answers its JSON."""
    kind = request.param

    def run(scenario, key=None, timeout=240):
        target = {"http": [url(operator)], "bridge": [str(CLI_BIN), url(operator)]}[kind]
        env = dict(os.environ, SANDPIT_API_KEY=key or KEY["X-API-KEY"])
        r = subprocess.run(["node", "mcp.mjs", kind, scenario, *target], cwd=str(mcp_dir), capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
        outs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        for o in outs:
            made.extend(o.get("created", []))
        assert r.returncode == 0, f"node mcp.mjs {kind} {scenario} exited {r.returncode}:\n{r.stdout}\n" \
                                  f"{r.stderr}\n" + operator.log_tail()
        return outs[-1]

    run.kind = kind
    return run


def session_objects(kube, ns=NS):
    """Names of the Sandboxes in ns that carry an MCP session's label."""
    st, _, objs = kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{ns}/sandboxes"
                               f"?labelSelector={LABEL.replace('/', '%2F')}")
    assert st == 200, objs
    return [o["metadata"]["name"] for o in objs["items"]]


def wait_gone(kube, name, ns=NS):
    wait_for(lambda: kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{ns}/sandboxes/{name}")[0] == 404,
             60, interval=0.2, what=f"Sandbox {ns}/{name} to be gone")


# ---- the SDK client's scenarios --------------------------------------------


def test_tools(mcp):
    out = mcp("tools")
    assert out["server"]["name"] == "sandpit"
    assert {"create_sandbox", "list_sandboxes", "kill_sandbox", "run_code", "run_command", "read_file",
            "write_file", "list_files", "download_files", "get_metrics"} <= set(out["tools"])
    assert out["tools"]["run_code"]["input"]["required"] == ["code"]
    # No one node to ask for its templates' languages (docs/mcp.md): all six offered.
    assert out["tools"]["run_code"]["input"]["properties"]["language"]["enum"] == [
        "python", "javascript", "typescript", "r", "java", "bash"]
    assert out["ping"] == {}


def test_run_python_text_and_image(mcp, kube):
    """The session's sandbox: a Sandbox object, reached on its agent; gone
    when the session ends."""
    out = mcp("code")
    assert out["isError"] is False, out
    assert "hello from mcp" in out["text"] and "42" in out["text"]
    assert out["images"] == [{"mimeType": "image/png", "magic": "89504e470d0a1a0a"}]
    assert out["state"] == "42"  # kept between calls: the same sandbox
    assert out["codeError"] == {"isError": True, "name": "ZeroDivisionError"}
    # A language the template lacks: the agent's refusal, as before /v1/info had the lists.
    assert out["noR"]["isError"] is True and "this sandbox's template has no R" in out["noR"]["text"], out["noR"]
    wait_gone(kube, out["structured"]["sandbox_id"])


def test_write_then_read(mcp, kube):
    before = session_objects(kube)
    out = mcp("files")
    assert out["write"]["path"] == "/home/user/mcp/a.txt" and out["write"]["size"] == 12
    assert out["read"] == "hello files\n"
    assert out["image"] == [{"type": "image", "mimeType": "image/png", "same": True}]
    assert out["list"] == ["a.txt:file", "dot.png:file"]
    assert out["download"] == {"mimeType": "application/gzip", "gzip": "1f8b"}
    assert out["missing"]["isError"] is True and "nope.txt" in out["missing"]["text"]
    wait_for(lambda: session_objects(kube) == before, 60, interval=0.2, what="the session's Sandbox to go")


def test_sandbox_lifecycle(mcp, kube):
    """create_sandbox makes a Sandbox object; the tools act on it by its
    name; kill_sandbox deletes it."""
    out = mcp("lifecycle")
    assert out["made"]["state"] == "running" and out["made"]["session"] is False
    assert out["made"]["metadata"]["run"].startswith("mcp-")
    assert out["listed"] == [True]
    assert out["env"] == "yes\n"
    assert out["timeoutMoved"] is True
    assert out["paused"] == "paused"
    assert out["whilePaused"]["isError"] is True
    assert out["resumed"] == "running"
    assert out["metrics"] is True
    assert out["killed"] is True
    assert out["killAgain"]["isError"] is True and "not found" in out["killAgain"]["text"]
    assert out["listedAfter"] == 0


def test_session_end_deletes_its_sandbox(mcp, kube):
    out = mcp("session")
    assert out["stdout"] == "42\n"
    if mcp.kind == "http":
        assert out["terminated"] is True
    wait_gone(kube, out["sandbox"])


# ---- on the wire: the session's Sandbox, namespaces ------------------------


def post(operator, body, headers=None, method="POST", key=None):
    """One request to the operator's /mcp with key (the suite's by default;
    False: none; a dict: those headers instead, a Kubernetes token)."""
    h = {"Content-Type": "application/json", "Accept": "application/json"}
    if isinstance(key, dict):
        h.update(key)
    elif key is not False:
        h["X-API-KEY"] = key or KEY["X-API-KEY"]
    h.update(headers or {})
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url(operator), data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def try_open(operator, key=None):
    """A new session's id (2025-11-25: structured results), None on a 401 or
    403."""
    status, headers, body = post(operator, {**INIT, "params": {**INIT["params"], "protocolVersion": "2025-11-25"}},
                                 key=key)
    if status in (401, 403):
        return None
    assert status == 200, body
    return headers["Mcp-Session-Id"]


def open_session(operator, key=None, wait=0):
    """A new session, initialized; wait: seconds to wait for the credential
    to be taken (a new key's watch, a new Role)."""
    sid = wait_for(lambda: try_open(operator, key), wait, interval=0.5, what="the credential") if wait \
        else try_open(operator, key)
    assert sid, "refused"
    assert post(operator, {"jsonrpc": "2.0", "method": "notifications/initialized"}, {"Mcp-Session-Id": sid},
                key=key)[0] == 202
    return sid


def call(operator, sid, id_, tool, args, key=None):
    """tools/call in session sid: the result (a JSON answer)."""
    status, _, body = post(operator, {"jsonrpc": "2.0", "id": id_, "method": "tools/call",
                                      "params": {"name": tool, "arguments": args}},
                           {"Mcp-Session-Id": sid}, key=key)
    assert status == 200, body
    return json.loads(body)["result"]


def end_session(operator, sid, key=None):
    assert post(operator, None, {"Mcp-Session-Id": sid}, method="DELETE", key=key)[0] == 204


def test_session_sandbox_is_a_labelled_sandbox_object(kube, operator, made):
    """The session's sandbox is a Sandbox object in the key's namespace with
    sandpit.dev/mcp-session=SESSION, as kubectl shows it; the session's end
    (DELETE) deletes the object."""
    sid = open_session(operator)
    try:
        r = call(operator, sid, 2, "run_command", {"command": "hostname >/dev/null && echo up"})
        assert not r.get("isError") and r["structuredContent"]["stdout"] == "up\n", r
        name = r["structuredContent"]["sandbox_id"]
        made.append(name)
        p = kube.kubectl("get", "sbx", "-n", NS, "-l", f"{LABEL}={sid}", "-o", "json")
        items = json.loads(p.stdout)["items"]
        assert [o["metadata"]["name"] for o in items] == [name]
        obj = items[0]
        assert obj["metadata"]["labels"][LABEL] == sid
        assert obj["metadata"]["labels"]["sandpit.dev/created-by"] == "e2b-gateway"
        assert obj["status"]["phase"] == "Running"
        # The agent knows it by its own id, not the object's name.
        assert obj["status"]["sandboxID"] != name
        # list_sandboxes marks it as the session's.
        r = call(operator, sid, 3, "list_sandboxes", {})
        mine = [s for s in r["structuredContent"]["sandboxes"] if s["sandbox_id"] == name]
        assert len(mine) == 1 and mine[0]["session_sandbox"] is True, r
    finally:
        end_session(operator, sid)
    wait_gone(kube, name)


def test_a_key_sees_only_its_namespace(kube, operator, made):
    """A session of B's key neither lists nor touches NS's sandbox (its tools
    answer "not found", as for one that does not exist; the sandbox lives
    on); B's sandboxes are made in B; NS's key cannot use B's session."""
    key_b = make_key(kube, NS_B)
    # The key reaches the gateway through the Secret's watch.
    sid_b = open_session(operator, key_b, wait=15)
    sid_a = open_session(operator)
    theirs = None
    try:
        r = call(operator, sid_a, 2, "create_sandbox", {"timeout": 120})
        assert not r.get("isError"), r
        mine = r["structuredContent"]["sandbox_id"]
        made.append(mine)
        assert sbx_obj(kube, mine)["metadata"]["namespace"] == NS
        r = call(operator, sid_b, 2, "list_sandboxes", {}, key=key_b)
        assert mine not in [s["sandbox_id"] for s in r["structuredContent"]["sandboxes"]]
        for i, (tool, args) in enumerate([("run_command", {"command": "echo hi"}), ("run_code", {"code": "1"}),
                                          ("get_metrics", {}), ("read_file", {"path": "/etc/hostname"}),
                                          ("write_file", {"path": "/tmp/x", "content": "x"}),
                                          ("set_timeout", {"timeout": 60}), ("kill_sandbox", {})]):
            r = call(operator, sid_b, 10 + i, tool, {**args, "sandbox_id": mine}, key=key_b)
            assert r["isError"] is True, (tool, r)
            text = r["content"][0]["text"]
            assert f"sandbox {mine} not found" in text and "list_sandboxes" in text, (tool, text)
        # Nor by the agent's id of it.
        aid = sbx_obj(kube, mine)["status"]["sandboxID"]
        r = call(operator, sid_b, 30, "run_command", {"command": "echo hi", "sandbox_id": aid}, key=key_b)
        assert r["isError"] is True and "not found" in r["content"][0]["text"], r
        # It lives on, untouched.
        assert sbx_obj(kube, mine)["status"]["phase"] == "Running"
        r = call(operator, sid_a, 3, "run_command", {"command": "echo still", "sandbox_id": mine})
        assert r["structuredContent"]["stdout"] == "still\n", r
        # B's own is made in B, and B's session reaches it.
        r = call(operator, sid_b, 4, "run_command", {"command": "echo b"}, key=key_b)
        assert r["structuredContent"]["stdout"] == "b\n", r
        theirs = r["structuredContent"]["sandbox_id"]
        st, _, obj = kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{NS_B}/sandboxes/{theirs}")
        assert st == 200 and obj["metadata"]["labels"][LABEL] == sid_b
        assert sbx_obj(kube, theirs) is None
        r = call(operator, sid_a, 4, "kill_sandbox", {"sandbox_id": theirs})
        assert r["isError"] is True and "not found" in r["content"][0]["text"], r
        # NS's key on B's session: no such session.
        assert post(operator, {"jsonrpc": "2.0", "id": 5, "method": "ping"}, {"Mcp-Session-Id": sid_b})[0] == 404
        r = call(operator, sid_a, 5, "kill_sandbox", {"sandbox_id": mine})
        assert r["structuredContent"]["killed"] is True, r
        wait_gone(kube, mine)
    finally:
        end_session(operator, sid_a)
        end_session(operator, sid_b, key=key_b)
    if theirs:
        wait_gone(kube, theirs, ns=NS_B)


def test_without_a_key_is_401_and_makes_nothing(kube, operator):
    before = session_objects(kube)
    for key in (False, "e2b_" + "3" * 40):
        status, headers, body = post(operator, INIT, key=key)
        assert status == 401, (status, body)
        assert json.loads(body)["error"]["code"] == -32600
        assert "Mcp-Session-Id" not in headers
    assert session_objects(kube) == before
    assert "e2b_" + "3" * 40 not in operator.log.read_text()


def test_kubernetes_tokens_with_rbac(kube, operator, made):
    """A ServiceAccount token: a session needs `get` on sandboxes in its
    namespace, its first tool making the session's sandbox `create` (RBAC
    refuses it, as a tool error, nothing made), and one granted the verbs of
    the tools runs them in its own namespace."""
    before = session_objects(kube, NS_B)
    reader = {"Authorization": f"Bearer {sa_token(kube, NS_B, 'mcp-reader', ['get'])}"}
    # RBAC may take a moment to see a new Role (a denial is cached 10 s).
    sid = open_session(operator, reader, wait=40)
    try:
        r = call(operator, sid, 2, "run_command", {"command": "echo hi"}, key=reader)
        assert r["isError"] is True, r
        text = r["content"][0]["text"]
        assert "not allowed" in text and f"system:serviceaccount:{NS_B}:mcp-reader may not create" in text, text
        assert session_objects(kube, NS_B) == before
    finally:
        end_session(operator, sid, key=reader)
    runner = {"Authorization": f"Bearer {sa_token(kube, NS_B, 'mcp-runner', ['get', 'list', 'create', 'update', 'delete'])}"}
    sid = open_session(operator, runner, wait=40)
    name = None
    try:
        r = wait_for(lambda: (lambda r: r if not r.get("isError") else None)(
            call(operator, sid, 2, "run_command", {"command": "echo $((6*7))"}, key=runner)),
            40, interval=1, what="the runner's create grant")
        assert r["structuredContent"]["stdout"] == "42\n", r
        name = r["structuredContent"]["sandbox_id"]
        st, _, obj = kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{NS_B}/sandboxes/{name}")
        assert st == 200 and obj["metadata"]["labels"][LABEL] == sid
    finally:
        end_session(operator, sid, key=runner)
    if name:
        wait_gone(kube, name, ns=NS_B)
    log = operator.log.read_text()
    assert reader["Authorization"][7:] not in log and runner["Authorization"][7:] not in log
