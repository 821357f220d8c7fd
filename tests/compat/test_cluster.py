"""The gateway in cluster mode: the real E2B SDKs against `sandpit-operator
--gateway-listen` (the cluster backend: Sandbox objects through the
Kubernetes API), with a real cluster-mode agent registering its Lease, on the
fixture API server (tests/fixtures/kube-apiserver.py) or, with
SANDPIT_K8S=real (`make test-k8s`), on a real kube-apiserver and
kube-controller-manager (tests/integration/cluster.py).

The SDK scripts are the local suite's (js/); on top, what only a cluster
has: the sandboxes are Sandbox objects (`kubectl get sbx`), killed ones are
gone from the API, the access token lives in a Secret owned by the Sandbox
and works on another replica, a create the agent refuses or that is never
Ready leaves nothing behind; docs/install.md's examples/e2b/hello.mjs runs
unchanged with a key from `sandpit keys create`. conftest's leak check covers
the agent."""

import json
import os
import re
import signal
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import HERE, SDK_LINES, Client, find_free_port, start_agent, stop_agent, wait_for, write_token_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from cluster import new_kube  # noqa: E402
from test_agent_cluster import ClusterAgent  # noqa: E402
from test_operator import OP_NS, OPERATOR_BIN, Operator  # noqa: E402

pytestmark = pytest.mark.slow

NODE = "node-gw"
NS = "default"
SBX = f"/apis/sandpit.dev/v1alpha1/namespaces/{NS}/sandboxes"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
NS_B = "team-b"  # another namespace, for API keys and tokens of its own
CLI_BIN = Path(__file__).resolve().parents[2] / "build" / "bin" / "sandpit"
# The suite's API key for namespace NS (--gateway-auth keys, the default),
# made by the operator fixture with `sandpit keys --kubeconfig`.
KEY = {"X-API-KEY": None}


def keys_cli(kube, *args):
    """`sandpit keys ARGS` on the Secret sandpit-api-keys of OP_NS."""
    return subprocess.run([str(CLI_BIN), "keys", "--kubeconfig", kube.kubeconfig, "--secret-namespace", OP_NS, *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def make_key(kube, namespace):
    r = keys_cli(kube, "create", "--namespace", namespace)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def kube():
    tmp = tempfile.mkdtemp(prefix="sandpit-compat-kube-")
    k = new_kube(tmp)
    k.kubectl("apply", "-f", str(Path(__file__).resolve().parents[2] / "crds"))
    k.kubectl("create", "namespace", OP_NS)
    k.kubectl("create", "namespace", NS_B)
    try:
        yield k
    finally:
        k.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def node(templates_dir, kube, tmp_path_factory):
    if not (templates_dir / "default").exists():
        pytest.fail("the `default` template is missing (make rootfs builds it)", pytrace=False)
    if not (templates_dir / "code-interpreter").exists():
        pytest.fail("the `code-interpreter` template is missing (mk/templates.sh code-interpreter "
                    "builds it)", pytrace=False)
    tf, token = write_token_file(tmp_path_factory.mktemp("gw-token"))
    port = find_free_port()
    a = start_agent("gw", templates_dir, cls=ClusterAgent, listen=f"127.0.0.1:{port}", token_file=tf,
                    extra_args=["--kubeconfig", kube.kubeconfig, "--node-name", NODE, "--lease-duration", "10",
                                "--capacity-cpu", "8", "--capacity-memory", str(8 << 30)])
    a.port, a.token, a.token_file = port, token, tf
    yield a
    stop_agent(a)


def gateway_port(op, timeout=30):
    def port():
        m = re.search(r"gateway \(E2B API\) on \S+, tcp port (\d+)", op.log.read_text())
        return int(m.group(1)) if m else None
    wait_for(lambda: port() or op.proc.poll() is not None, timeout, what="the operator's gateway port")
    assert op.proc.poll() is None, "operator exited at start:\n" + op.log_tail()
    return port()


def start_operator(kube, node, tmp, extra=()):
    op = Operator(kube, node, tmp, extra=["--gateway-listen", "127.0.0.1:0", *extra])
    op.gateway_port = gateway_port(op)
    op.gateway = Client(tcp=("127.0.0.1", op.gateway_port))
    return op


def stop_operator(op, node):
    rc = op.stop()
    log = op.log.read_text()
    assert rc == 0, f"operator did not stop cleanly on SIGTERM ({rc}):\n{log[-4000:]}"
    assert node.token not in log, "the agent token was logged"
    return log


@pytest.fixture(scope="module")
def operator(kube, node, tmp_path_factory):
    wait_for(lambda: kube.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{OP_NS}/leases/"
                                  f"sandpit-agent-{NODE}")[0] == 200, 30, what="the agent's Lease")
    KEY["X-API-KEY"] = make_key(kube, NS)
    op = start_operator(kube, node, tmp_path_factory.mktemp("gw-operator"))
    yield op
    log = stop_operator(op, node)
    # No access token in the log: every one the tests saw was recorded.
    for tok in TOKENS_SEEN:
        assert tok not in log, "an access token was logged"


TOKENS_SEEN = []


def sbx_obj(kube, name):
    st, _, obj = kube.request("GET", f"{SBX}/{name}")
    return obj if st == 200 else None


def secret_obj(kube, name):
    st, _, obj = kube.request("GET", f"{SECRETS}/e2b-token-{name}")
    return obj if st == 200 else None


def wait_gone(kube, name):
    wait_for(lambda: sbx_obj(kube, name) is None, 60, interval=0.2, what=f"Sandbox {name} to be gone")


@pytest.fixture
def made(kube):
    """Names of Sandboxes a test made: after it, none may be left."""
    names = []
    yield names
    left = [n for n in names if sbx_obj(kube, n)]
    for n in left:
        kube.kubectl("delete", "sandbox", n, "--wait=false", check=False)
    assert not left, f"Sandboxes left behind: {left}"


@pytest.fixture(params=SDK_LINES)
def sdk(request, sdk_dirs, operator, made):
    """Runs a script of js/ with one SDK release line against the operator's gateway."""
    d = sdk_dirs[request.param]
    url = f"http://127.0.0.1:{operator.gateway_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_KEY=KEY["X-API-KEY"], E2B_API_URL=url, E2B_SANDBOX_URL=url)

    def run(script, timeout=300):
        r = subprocess.run(["node", script], cwd=str(d), env=env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        outs = []
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                try:
                    outs.append(json.loads(line))
                except ValueError:
                    pass
        for o in outs:
            made.extend(o.get("created", []))
        assert r.returncode == 0, f"node {script} exited {r.returncode}:\n{r.stdout}\n{r.stderr}\n" \
                                  + operator.log_tail()
        return outs[-1] if outs else {}

    return run


# --- the SDK suite ------------------------------------------------------------


def test_lifecycle(sdk, kube, made):
    out = sdk("lifecycle.mjs")
    assert out["info"]["id"] is True
    assert out["info"]["metadata"]["n"] == "1" and out["info"]["metadata"]["run"].startswith("compat-")
    assert out["info"]["state"] == "running"
    assert out["info"]["templateId"] == "code-interpreter-v1"
    assert out["timeoutMoved"] is True
    assert out["listed"] == ["1", "2"]
    assert out["listedOne"] == [True]
    assert out["pages"] == ["1", "2"]
    assert out["metrics"] is True
    assert out["paused"] is True
    assert out["pausedState"] == "paused"
    assert out["pausedListed"] == [True]
    assert out["resumedState"] == "running"
    assert out["kept"] == "'state before pause'"
    assert out["killA"] is True and out["killB"] is True
    assert out["killAgain"] is False
    assert out["gone"] == "SandboxNotFoundError"
    assert out["listedAfter"] == 0
    # kill answers once the object is gone: no Sandbox, no token Secret.
    assert len(made) == 2
    for name in made:
        assert sbx_obj(kube, name) is None, f"Sandbox {name} still exists after kill"
        assert secret_obj(kube, name) is None, f"the token Secret of {name} is still there"


def sbx_names(kube):
    return {o["metadata"]["name"] for o in kube.ok("GET", SBX)["items"]}


def started(kube):
    """Names of the Sandboxes of NS that had a Started Event."""
    return {e["regarding"]["name"] for e in kube.ok("GET", f"/apis/events.k8s.io/v1/namespaces/{NS}/events")["items"]
            if e["reason"] == "Started" and e["regarding"]["kind"] == "Sandbox"}


def test_install_guide_script(kube, sdk_dirs, operator, made):
    """docs/install.md step 4, as a newcomer runs it: a key from `sandpit keys
    create`, only the SDK's environment variables, and examples/e2b/hello.mjs
    unchanged against the cluster's gateway."""
    key = make_key(kube, NS)
    d = sdk_dirs[SDK_LINES[0]]
    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "e2b" / "hello.mjs", d / "install-hello.mjs")
    url = f"http://127.0.0.1:{operator.gateway_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    before, started_before = sbx_names(kube), started(kube)
    r = subprocess.run(["node", "install-hello.mjs"], cwd=str(d), capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL, env=dict(env, E2B_API_URL=url, E2B_SANDBOX_URL=url))
    assert r.returncode == 1 and "set E2B_API_KEY" in r.stderr, (r.stdout, r.stderr)
    r = subprocess.run(["node", "install-hello.mjs"], cwd=str(d), capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL, env=dict(env, E2B_API_KEY=key, E2B_API_URL=url, E2B_SANDBOX_URL=url))
    made.extend(sbx_names(kube) - before)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n" + operator.log_tail()
    assert r.stdout.strip() == "2"
    # Its sandbox was a Sandbox object of the key's namespace, and the kill removed it.
    assert started(kube) - started_before, "no Sandbox of the script was started in the key's namespace"
    assert sbx_names(kube) == before


def test_code_interpreter(sdk):
    out = sdk("code.mjs")
    assert out["state"] == "2"
    assert "<table" in out["dfHtml"]
    assert out["errName"] == "ZeroDivisionError"
    assert out["pngMagic"] == "89504e470d0a1a0a"
    assert out["envFromCreate"] == "hello-from-create\n"
    assert out["js"] in ("'2,4,6'", "2,4,6")
    assert out["ctxState"] == "42"
    assert out["contexts"] is True
    assert out["killed"] is True


def test_commands(sdk):
    out = sdk("commands.mjs")
    assert out["stdout"] == "one\ntwo\nyes\n"
    assert out["exitCode"] == 0
    assert out["chunks"] >= 2
    assert out["exit"] == {"isCommandExitError": True, "exitCode": 3, "stdout": "partial\n"}
    assert out["asRoot"] == "root\n/root\n"
    assert out["killPid"] is True
    assert out["bg"]["stdout"] == "fed on stdin\n"
    assert out["connect"] == "reconnected\n"
    assert out["killed"] is True
    assert out["orphan"] != "resolved" and out["orphan"]["ms"] < 30_000


def test_files(sdk):
    out = sdk("files.mjs")
    assert out["readText"] == "hello files\n"
    assert out["bytesEqual"] is True
    assert out["list"] == ["a.txt:file", "b.bin:file", "m1.txt:file", "m2.txt:file", "sub:dir"]
    assert out["existsTrue"] is True and out["existsFalse"] is False
    assert "create:watched.txt" in out["watch"]
    assert out["missing"] == "FileNotFoundError"
    assert out["killed"] is True


def test_get_host_port_proxy(sdk):
    """The port proxy to the agent's advertised TCP endpoint."""
    out = sdk("ports.mjs")
    assert out["hostNames"] is True, out["host"]
    assert out["status"] == 200, out
    assert "hello-from-sandbox.txt" in out["listing"]
    assert out["file"] == {"status": 200, "body": "hello"}
    assert out["missing"] == 404
    assert out["closedPort"] == 502


# --- what only a cluster has -----------------------------------------------------


def create(gw, made, **body):
    body.setdefault("templateID", "base")
    body.setdefault("timeout", 300)
    r = gw.post("/v2/sandboxes", body, headers=KEY)
    if r.status == 201:
        made.append(r.json()["sandboxID"])
        TOKENS_SEEN.append(r.json()["envdAccessToken"])
    return r


def envd_files(gw, sid, token, path="/home/user/x.txt"):
    h = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983"}
    if token is not None:
        h["X-Access-Token"] = token
    return gw.get(f"/files?path={path}", headers=h)


def test_sandbox_objects_and_the_token_secret(kube, node, operator, made):
    gw = operator.gateway
    r = create(gw, made, metadata={"team": "ml", "run": "objects"}, envVars={"GREETING": "hi"}, timeout=600)
    assert r.status == 201, r
    sid, token = r.json()["sandboxID"], r.json()["envdAccessToken"]
    # The sandbox is a Sandbox object: kubectl shows it Ready, with E2B's fields mapped.
    p = kube.kubectl("get", "sbx", "-n", NS, "-o", "json")
    names = [o["metadata"]["name"] for o in json.loads(p.stdout)["items"]]
    assert sid in names
    obj = sbx_obj(kube, sid)
    assert obj["status"]["phase"] == "Running"
    assert obj["spec"]["template"] == "default"
    assert obj["spec"]["labels"] == {"team": "ml", "run": "objects"}
    assert obj["spec"]["env"] == [{"name": "GREETING", "value": "hi"}]
    assert obj["spec"]["timeout"] == "600s"
    assert obj["spec"]["expiryPolicy"] == "Delete"
    assert obj["metadata"]["annotations"]["sandpit.dev/e2b-template"] == "base"
    assert obj["metadata"]["annotations"]["sandpit.dev/e2b-secure"] == "true"
    assert obj["metadata"]["labels"]["sandpit.dev/created-by"] == "e2b-gateway"
    assert token not in json.dumps(obj), "the access token is in the Sandbox object"
    # The token is in a Secret owned by the Sandbox, not in the Sandbox.
    sec = secret_obj(kube, sid)
    assert sec is not None
    owner = sec["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Sandbox", sid, obj["metadata"]["uid"])
    import base64
    assert base64.b64decode(sec["data"]["token"]).decode() == token
    # envd needs it; get answers it.
    assert envd_files(gw, sid, None).status == 401
    assert envd_files(gw, sid, "0" * 48).status == 401
    r = envd_files(gw, sid, token)
    assert r.status == 404 and r.json()["code"] == 404  # no such file: through to the agent
    assert gw.get(f"/sandboxes/{sid}", headers=KEY).json()["envdAccessToken"] == token
    # The E2B list and the objects agree.
    listed = [s["sandboxID"] for s in gw.get("/v2/sandboxes?metadata=run%3Dobjects", headers=KEY).json()]
    assert listed == [sid]
    # A sandbox made with kubectl is listed by the SDK's API too.
    kube.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": "by-kubectl"},
        "spec": {"template": "host", "timeout": "300s", "labels": {"run": "objects"}}}))
    made.append("by-kubectl")
    kube.kubectl("wait", "--for=condition=Ready", "sandbox/by-kubectl", "--timeout=60s")
    listed = sorted(s["sandboxID"] for s in gw.get("/v2/sandboxes?metadata=run%3Dobjects", headers=KEY).json())
    assert listed == sorted([sid, "by-kubectl"])
    # kill: the object and the Secret are gone when it answers.
    assert gw.delete(f"/sandboxes/{sid}", headers=KEY).status == 204
    assert sbx_obj(kube, sid) is None and secret_obj(kube, sid) is None
    assert gw.delete("/sandboxes/by-kubectl", headers=KEY).status == 204
    assert sbx_obj(kube, "by-kubectl") is None
    assert gw.delete(f"/sandboxes/{sid}", headers=KEY).json()["code"] == 404


def test_v1_create_without_secure_has_no_token(kube, operator, made):
    """v1 POST /sandboxes without secure: no token, no Secret, envd open."""
    gw = operator.gateway
    r = gw.post("/sandboxes", {"templateID": "base", "timeout": 120, "allow_internet_access": True}, headers=KEY)
    assert r.status == 201, r
    sid = r.json()["sandboxID"]
    made.append(sid)
    assert "envdAccessToken" not in r.json() or r.json()["envdAccessToken"] is None
    obj = sbx_obj(kube, sid)
    assert "sandpit.dev/e2b-secure" not in obj["metadata"].get("annotations", {})
    assert secret_obj(kube, sid) is None
    assert envd_files(gw, sid, None).status == 404  # through to the agent: no such file
    assert gw.delete(f"/sandboxes/{sid}", headers=KEY).status == 204


def test_token_works_on_another_replica(kube, node, operator, made, tmp_path):
    """A second replica (standby: it does not lead) serves the gateway too and
    reads the token from the Secret the first one wrote."""
    other = start_operator(kube, node, tmp_path)
    try:
        r = create(operator.gateway, made)
        assert r.status == 201, r
        sid, token = r.json()["sandboxID"], r.json()["envdAccessToken"]
        gw2 = other.gateway
        info = gw2.get(f"/sandboxes/{sid}", headers=KEY)
        assert info.status == 200 and info.json()["envdAccessToken"] == token
        assert envd_files(gw2, sid, "f" * 48).status == 401
        assert envd_files(gw2, sid, token).status == 404  # let through to the agent
        # Made on the standby, answered once the leader made it Ready.
        r2 = create(gw2, made)
        assert r2.status == 201, r2
        assert sbx_obj(kube, r2.json()["sandboxID"])["status"]["phase"] == "Running"
        assert gw2.delete(f"/sandboxes/{sid}", headers=KEY).status == 204
        assert operator.gateway.delete(f"/sandboxes/{r2.json()['sandboxID']}", headers=KEY).status == 204
    finally:
        stop_operator(other, node)


def test_refused_create_leaves_nothing(kube, node, operator, made):
    gw = operator.gateway
    before = len(json.loads(kube.kubectl("get", "sbx", "-n", NS, "-o", "json").stdout)["items"])
    # A SandboxTemplate whose image cannot be pulled (no registry in its
    # reference, none configured): ImagePullFailed, answered at once.
    kube.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": "from-image"},
        "spec": {"source": {"image": "python:3.12-slim"}}}))
    try:
        r = gw.post("/v2/sandboxes", {"templateID": "from-image", "timeout": 60}, headers=KEY)
    finally:
        kube.kubectl("delete", "sandboxtemplate", "from-image")
    assert r.status == 400, r
    assert "ImagePullFailed" in r.json()["message"], r.json()
    # Not a DNS label: refused before anything is written.
    r = gw.post("/v2/sandboxes", {"templateID": "Not_A_Label", "timeout": 60}, headers=KEY)
    assert r.status == 400 and "DNS label" in r.json()["message"], r
    # An env name the CRD refuses: the API server's message.
    r = gw.post("/v2/sandboxes", {"templateID": "base", "envVars": {"1bad": "x"}}, headers=KEY)
    assert r.status == 400 and "env" in r.json()["message"], r
    wait_for(lambda: len(json.loads(kube.kubectl("get", "sbx", "-n", NS, "-o", "json").stdout)["items"]) == before,
             30, what="no Sandbox left by the refused creates")
    st, _, secs = kube.request("GET", f"{SECRETS}?labelSelector=sandpit.dev%2Fcreated-by%3De2b-gateway")
    assert st == 200 and secs["items"] == [], secs


@pytest.mark.fixture_only  # SIGSTOP of the leader; the standby must not take over meanwhile
def test_create_timeout_deletes_the_object(kube, node, operator, made, tmp_path):
    """Nobody makes the Sandbox Ready (the leader is stopped): the create
    answers 504 after --gateway-create-timeout and deletes the object."""
    other = start_operator(kube, node, tmp_path, extra=["--gateway-create-timeout", "2s"])
    os.kill(operator.proc.pid, signal.SIGSTOP)
    try:
        r = other.gateway.post("/v2/sandboxes", {"templateID": "base"}, headers=KEY)
        assert r.status == 504, r
        assert "not yet placed" in r.json()["message"], r.json()
        items = json.loads(kube.kubectl("get", "sbx", "-n", NS, "-o", "json").stdout)["items"]
        assert items == [], [o["metadata"]["name"] for o in items]
    finally:
        os.kill(operator.proc.pid, signal.SIGCONT)
        stop_operator(other, node)


@pytest.mark.real_only("the garbage collector")
def test_kubectl_delete_collects_the_token_secret(kube, operator, made):
    """The Secret is owned by its Sandbox: deleting the Sandbox some other way
    than through the gateway still removes the token."""
    r = create(operator.gateway, made)
    assert r.status == 201, r
    sid = r.json()["sandboxID"]
    assert secret_obj(kube, sid) is not None
    kube.kubectl("delete", "sandbox", sid, "--timeout=60s")
    wait_for(lambda: secret_obj(kube, sid) is None, 60, interval=0.3, what="the token Secret to be collected")
    assert operator.gateway.get(f"/sandboxes/{sid}", headers=KEY).status == 404


def test_gateway_flags(kube, node, operator):
    """Bad --gateway-* flags: exit 2 with one line; a port that cannot be
    bound: exit 1, nothing left running."""
    base = [str(OPERATOR_BIN), "--kubeconfig", kube.kubeconfig, "--agent-token-file", str(node.token_file),
            "--namespace", OP_NS, "--leader-elect=false"]
    for extra, word in [(["--gateway-namespace", "x"], "--gateway-listen"),
                        (["--gateway-internet"], "--gateway-listen"),
                        (["--gateway-domain", "e2b.example"], "--gateway-listen"),
                        (["--gateway-listen", "127.0.0.1:0", "--gateway-tls-cert", "/x.pem"], "--gateway-tls-key"),
                        (["--gateway-listen", "127.0.0.1:0", "--gateway-create-timeout", "soon"], "duration"),
                        (["--gateway-listen", "127.0.0.1:0", "--gateway-internet=maybe"], "true or false"),
                        (["--gateway-listen"], "needs an argument")]:
        p = subprocess.run(base + extra, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        assert p.returncode == 2, (extra, p.returncode, p.stderr)
        assert word in p.stderr and len(p.stderr.strip().splitlines()) == 1, (extra, p.stderr)
    # The running operator's gateway port is taken.
    p = subprocess.run(base + ["--gateway-listen", f"127.0.0.1:{operator.gateway_port}", "--log-format", "text"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    assert "Cannot serve the gateway" in p.stderr, p.stderr[-2000:]
    assert node.token not in p.stderr



def test_auto_pause(sdk, kube, made):
    """autoPause (lifecycle onTimeout 'pause'): the Sandbox object gets
    expiryPolicy Pause; at the deadline the operator (and the agent) pause
    it; connect moves spec.timeout and so resumes it, memory kept."""
    out = sdk("autopause.mjs")
    assert out["stateBefore"] == "running"
    assert out["lifecycle"]["onTimeout"] == "pause"
    assert out["stateAtDeadline"] == "paused"
    assert out["listedPaused"] is True
    assert out["resumedState"] == "running"
    assert out["kept"] == "7"
    assert out["killed"] is True
    for name in made:
        wait_gone(kube, name)


def test_auto_pause_object(kube, operator, made):
    """The create's lifecycle maps onto spec.expiryPolicy; a bad onTimeout
    is a 400 and writes nothing."""
    r = create(operator.gateway, made, autoPause=True, timeout=300)
    assert r.status == 201, r
    sid = r.json()["sandboxID"]
    obj = sbx_obj(kube, sid)
    assert obj["spec"]["expiryPolicy"] == "Pause", obj["spec"]
    assert operator.gateway.delete(f"/sandboxes/{sid}", headers=KEY).status == 204
    r = create(operator.gateway, made, autoPause="yes")
    assert r.status == 400, r
    assert "autoPause" in r.json()["message"], r.json()


def test_domain_tls(kube, node, operator, made, sdk_dirs, tmp_path):
    """E2B_DOMAIN mode over TLS on a replica (--gateway-domain and the
    certificate flags), as in test_domain.py."""
    from conftest import make_ca, make_cert
    from test_domain import DOMAIN, random_loopback, run_domain_env
    ca, _ = make_ca(tmp_path, "ca")
    cert, key = make_cert(tmp_path, "ca", "server", f"*.{DOMAIN}", san=f"DNS:*.{DOMAIN},DNS:{DOMAIN}")
    addr = random_loopback()
    op = Operator(kube, node, tmp_path, extra=["--gateway-listen", f"{addr}:443", "--gateway-domain", DOMAIN,
                                               "--gateway-tls-cert", str(cert), "--gateway-tls-key", str(key)])
    try:
        gateway_port(op)
        d = sdk_dirs[SDK_LINES[0]]
        r = subprocess.run(["node", "--require", str(HERE / "js" / "resolve-domain.cjs"), "domain.mjs"], cwd=str(d),
                           env=run_domain_env(addr, ca, KEY["X-API-KEY"]), capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        outs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        for o in outs:
            made.extend(o.get("created", []))
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n" + op.log_tail()
        out = outs[-1]
        assert out["code"] == "42" and out["cmd"] == "over-tls\n" and out["read"] == "secret over tls\n"
        assert out["listed"] == [True] and out["killed"] is True
        for n in made:
            wait_gone(kube, n)
    finally:
        stop_operator(op, node)


# --- API keys and Kubernetes tokens (docs/auth.md) ---------------------------


def sa_token(kube, ns, name, verbs):
    """A bearer token of ServiceAccount ns/name, granted verbs on sandboxes in ns
    (the fixture's /_admin switches; on the real server a ServiceAccount, a Role,
    a RoleBinding and a token from the TokenRequest API)."""
    user = f"system:serviceaccount:{ns}:{name}"
    if not getattr(kube, "real", False):
        token = f"tok-{ns}-{name}"
        kube.ok("POST", "/_admin/tokens", {"token": token, "username": user, "uid": f"uid-{name}",
                                           "groups": ["system:serviceaccounts", "system:authenticated"]})
        if verbs:
            kube.ok("POST", "/_admin/grants", {"user": user, "namespace": ns, "verbs": verbs})
        return token
    kube.kubectl("create", "serviceaccount", "-n", ns, name)
    if verbs:
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": f"{name}-sandboxes", "namespace": ns},
                "rules": [{"apiGroups": ["sandpit.dev"], "resources": ["sandboxes"], "verbs": verbs}]}
        kube.kubectl("create", "-f", "-", input=json.dumps(role))
        kube.kubectl("create", "rolebinding", "-n", ns, f"{name}-sandboxes", f"--role={name}-sandboxes",
                     f"--serviceaccount={ns}:{name}")
    return kube.kubectl("create", "token", "-n", ns, name).stdout.strip()


def gateway_objects(kube):
    """The gateway's Sandboxes in NS and NS_B."""
    names = []
    for ns in (NS, NS_B):
        st, _, objs = kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{ns}/sandboxes"
                                   "?labelSelector=sandpit.dev%2Fcreated-by%3De2b-gateway")
        assert st == 200
        names += [f"{ns}/{o['metadata']['name']}" for o in objs["items"]]
    return sorted(names)


def test_keys_and_namespaces(kube, operator, made):
    """No key, a wrong one: 401, nothing made. A key of namespace B creates
    its Sandbox in B, where its access token works and its Secret lives; it
    does not see or touch NS's sandboxes, nor NS's key B's."""
    gw = operator.gateway
    before = gateway_objects(kube)
    for h in ({}, {"X-API-KEY": "e2b_" + "1" * 40}):
        for r in (gw.get("/v2/sandboxes", headers=h), gw.post("/v2/sandboxes", {"templateID": "base"}, headers=h)):
            assert r.status == 401 and r.json()["code"] == 401, r
    assert gateway_objects(kube) == before
    kb = {"X-API-KEY": make_key(kube, NS_B)}
    # the key reaches the gateway through the Secret's watch
    wait_for(lambda: gw.get("/v2/sandboxes", headers=kb).status == 200, 15, interval=0.2, what="B's key")
    r = create(gw, made, timeout=120)  # NS's own, with the suite's key
    assert r.status == 201, r
    mine = r.json()["sandboxID"]
    r = gw.post("/v2/sandboxes", {"templateID": "base", "timeout": 120}, headers=kb)
    assert r.status == 201, r
    theirs, token = r.json()["sandboxID"], r.json()["envdAccessToken"]
    TOKENS_SEEN.append(token)
    st, _, obj = kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{NS_B}/sandboxes/{theirs}")
    assert st == 200 and obj["status"]["phase"] == "Running"
    assert sbx_obj(kube, theirs) is None  # not in NS
    st, _, sec = kube.request("GET", f"/api/v1/namespaces/{NS_B}/secrets/e2b-token-{theirs}")
    assert st == 200 and sec["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    # the data plane finds it in B: its token works, a wrong one does not
    assert envd_files(gw, theirs, "0" * 48).status == 401
    assert envd_files(gw, theirs, token).status == 404  # no such file: through to the agent
    # each key sees its namespace's only
    assert [s["sandboxID"] for s in gw.get("/v2/sandboxes", headers=kb).json()] == [theirs]
    assert theirs not in [s["sandboxID"] for s in gw.get("/v2/sandboxes", headers=KEY).json()]
    for path in (f"/sandboxes/{mine}", f"/sandboxes/{mine}/metrics"):
        assert gw.get(path, headers=kb).status == 404
    assert gw.delete(f"/sandboxes/{mine}", headers=kb).status == 404
    assert gw.get(f"/sandboxes/{theirs}", headers=KEY).status == 404
    assert gw.delete(f"/sandboxes/{theirs}", headers=KEY).status == 404
    # each kills its own: objects and Secrets gone
    assert gw.delete(f"/sandboxes/{theirs}", headers=kb).status == 204
    assert kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{NS_B}/sandboxes/{theirs}")[0] == 404
    assert kube.request("GET", f"/api/v1/namespaces/{NS_B}/secrets/e2b-token-{theirs}")[0] == 404
    assert gw.delete(f"/sandboxes/{mine}", headers=KEY).status == 204
    assert sbx_obj(kube, mine) is None
    log = operator.log.read_text()
    assert kb["X-API-KEY"] not in log and KEY["X-API-KEY"] not in log and "e2b_" + "1" * 40 not in log


def test_kubernetes_tokens_with_rbac(kube, operator, made):
    """A ServiceAccount without RBAC is refused (403); one granted create, get
    and delete on sandboxes in its namespace creates its Sandbox there, and
    not in another."""
    gw = operator.gateway
    before = gateway_objects(kube)
    nobody = sa_token(kube, NS_B, "gw-nobody", [])
    r = gw.post("/v2/sandboxes", {"templateID": "base", "timeout": 60},
                headers={"Authorization": f"Bearer {nobody}"})
    assert r.status == 403 and f"system:serviceaccount:{NS_B}:gw-nobody may not create" in r.json()["message"], r
    assert gateway_objects(kube) == before
    runner = sa_token(kube, NS_B, "gw-runner", ["create", "get", "delete"])
    h = {"Authorization": f"Bearer {runner}", "X-API-KEY": "e2b_" + "2" * 40}
    # RBAC may take a moment to see a new Role (a denial is cached 10 s)
    r = wait_for(lambda: (lambda r: r if r.status == 201 else None)(
        gw.post("/v2/sandboxes", {"templateID": "base", "timeout": 60}, headers=h)),
        40, interval=1, what="the runner's grant")
    sid = r.json()["sandboxID"]
    TOKENS_SEEN.append(r.json()["envdAccessToken"])
    sbx_b = f"/apis/sandpit.dev/v1alpha1/namespaces/{NS_B}/sandboxes/{sid}"
    assert kube.request("GET", sbx_b)[0] == 200
    try:
        # not in NS: no grant there
        r = gw.post("/v2/sandboxes", {"templateID": "base", "timeout": 60}, headers={**h, "X-Sandpit-Namespace": NS})
        assert r.status == 403, r
        assert gw.get(f"/sandboxes/{sid}", headers=h).status == 200
        assert gw.delete(f"/sandboxes/{sid}", headers=h).status == 204
        assert kube.request("GET", sbx_b)[0] == 404
    finally:
        if kube.request("GET", sbx_b)[0] == 200:
            kube.kubectl("delete", "sandbox", "-n", NS_B, sid, "--wait=false", check=False)
    log = operator.log.read_text()
    assert runner not in log and nobody not in log


@pytest.mark.real_only("the fixture API server has no ResourceQuota admission")
def test_resource_quota_is_429(kube, operator, made):
    """A ResourceQuota on count/sandboxes.sandpit.dev: the create past it is
    E2B's 429, with nothing made."""
    gw = operator.gateway
    used = len(json.loads(kube.kubectl("get", "sbx", "-n", NS, "-o", "json").stdout)["items"])
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gw-sandboxes", "namespace": NS},
             "spec": {"hard": {"count/sandboxes.sandpit.dev": str(used + 1)}}}
    kube.kubectl("create", "-f", "-", input=json.dumps(quota))
    try:
        # the quota counts once the controller-manager has filled its status
        wait_for(lambda: json.loads(kube.kubectl("get", "resourcequota", "-n", NS, "gw-sandboxes", "-o",
                                                 "json").stdout).get("status", {}).get("hard"),
                 30, interval=0.2, what="the quota's status")
        r = create(gw, made, timeout=60)
        assert r.status == 201, r
        before = gateway_objects(kube)
        r = create(gw, made, timeout=60)
        assert r.status == 429 and r.json()["code"] == 429, r
        assert "ResourceQuota" in r.json()["message"]
        assert gateway_objects(kube) == before
    finally:
        kube.kubectl("delete", "resourcequota", "-n", NS, "gw-sandboxes", check=False)
    for sid in list(made):
        gw.delete(f"/sandboxes/{sid}", headers=KEY)
