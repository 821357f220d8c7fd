"""sandpit-operator end to end: the fixture API server (tests/fixtures/
kube-apiserver.py) with the CRDs from crds/, a standalone agent on TCP with a
bearer token, its Lease written by the test (the registration contract in
docs/operator.md), and the operator binary. Sandboxes are applied and deleted
with the real kubectl; commands run through the agent's API.

conftest's leak check covers the agent (it is started with start_tcp_agent): after
every test no sandbox may be left on it, so every test deletes its objects."""

import datetime
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, Client, find_free_port, start_tcp_agent, stop_agent, wait_for
from cluster import new_kube
from test_kube_apiserver import KUBECTL

# SANDPIT_OPERATOR_BIN=build/asan/bin/sandpit-operator runs the tests against a sanitized build.
OPERATOR_BIN = Path(os.environ.get("SANDPIT_OPERATOR_BIN") or REPO / "build" / "bin" / "sandpit-operator")
OP_NS = "sandpit-system"
NODE = "node-a"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{OP_NS}/leases"
SBX = "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxes"
EVENTS = "/apis/events.k8s.io/v1/namespaces/default/events"

if not os.path.exists(KUBECTL):
    pytest.skip(f"kubectl is not installed ({KUBECTL}; mk/tools.sh installs it)", allow_module_level=True)


def micro_time(delta_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def kube():
    tmp = tempfile.mkdtemp(prefix="sandpit-op-kubeapi-")
    k = new_kube(tmp)
    k.kubectl("apply", "-f", str(REPO / "crds"))
    k.kubectl("create", "namespace", OP_NS)
    yield k
    k.stop()
    log = (k.dir / "server.log").read_text()
    shutil.rmtree(tmp)
    assert "Traceback" not in log, "the fixture API server hit an internal error:\n" + log[-4000:]


@pytest.fixture(scope="module")
def node(templates_dir, tmp_path_factory):
    a = start_tcp_agent("op", templates_dir, tmp_path_factory)
    a.api = Client(tcp=("127.0.0.1", a.port), token=a.token)
    yield a
    stop_agent(a)


def lease_body(node, cpu="2", memory=str(4 << 30), renew=None, duration=3600):
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": f"sandpit-agent-{NODE}", "namespace": OP_NS,
                     "labels": {"app.kubernetes.io/component": "sandpit-agent", "sandpit.dev/node": NODE},
                     "annotations": {"sandpit.dev/endpoint": f"http://127.0.0.1:{node.port}",
                                     "sandpit.dev/capacity-cpu": cpu, "sandpit.dev/capacity-memory": memory,
                                     "sandpit.dev/version": "test"}},
        "spec": {"holderIdentity": NODE, "leaseDurationSeconds": duration,
                 "acquireTime": micro_time(), "renewTime": renew or micro_time()},
    }


def set_capacity(kube, cpu):
    kube.ok("PATCH", f"{LEASE}/sandpit-agent-{NODE}",
            {"metadata": {"annotations": {"sandpit.dev/capacity-cpu": cpu}}},
            ctype="application/merge-patch+json")


@pytest.fixture(scope="module")
def lease(kube, node):
    kube.ok("POST", LEASE, lease_body(node))
    yield
    kube.request("DELETE", f"{LEASE}/sandpit-agent-{NODE}")


class Operator:
    def __init__(self, kube, node, tmp, extra=()):
        self.health_port = find_free_port()
        self.log = tmp / "operator.log"
        argv = [str(OPERATOR_BIN), "--kubeconfig", kube.kubeconfig, "--agent-token-file", str(node.token_file),
                "--namespace", OP_NS, "--health-listen", f"127.0.0.1:{self.health_port}", "--workers", "2",
                "--resync-seconds", "2", "--log-format", "text", "--log-level", "debug", *extra]
        if "--agent-ca" not in extra:
            argv.append("--agent-insecure-http")  # the test agents serve plain HTTP on loopback
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)

    def probe(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def log_tail(self):
        return self.log.read_text()[-4000:]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


@pytest.fixture(scope="module")
def operator(kube, node, lease, tmp_path_factory):
    yield from running_operator(kube, node, tmp_path_factory.mktemp("operator"))


def running_operator(kube, node, tmp, extra=()):
    """A fixture body: the operator started and ready; at the end it must stop
    cleanly on SIGTERM and its log must not hold the agent token."""
    if not OPERATOR_BIN.exists():
        pytest.fail(f"{OPERATOR_BIN} does not exist: build it first (make all)", pytrace=False)
    op = Operator(kube, node, tmp, extra=extra)
    try:
        wait_for(lambda: op.proc.poll() is not None or op.probe("/readyz") == 200, 30, what="operator /readyz")
        assert op.proc.poll() is None, "operator exited at start:\n" + op.log_tail()
        yield op
    finally:
        rc = op.stop()
        log = op.log.read_text()
        assert rc == 0, f"operator did not stop cleanly on SIGTERM ({rc}):\n{log[-4000:]}"
        assert node.token not in log, "the agent token was logged"


@pytest.fixture(autouse=True)
def operator_alive(request):
    yield
    op = request.node.funcargs.get("operator")
    if op is not None:
        assert op.proc.poll() is None, "the operator died:\n" + op.log_tail()


def manifest(name, cpu="500m", memory="128Mi", env=None, timeout="10m", **spec):
    return json.dumps({
        "apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox",
        "metadata": {"name": name},
        "spec": {"template": "host", "resources": {"cpu": cpu, "memory": memory, "pids": 128, "disk": "64Mi"},
                 "timeout": timeout, "env": env or [], "labels": {"test": name}, **spec},
    })


def get_sbx(kube, name):
    st, _, obj = kube.request("GET", f"{SBX}/{name}")
    return obj if st == 200 else None


def condition(obj, ctype):
    for c in (obj or {}).get("status", {}).get("conditions", []):
        if c["type"] == ctype:
            return c
    return None


def wait_ready(kube, name):
    p = kube.kubectl("wait", "--for=condition=Ready", f"sandbox/{name}", "--timeout=60s", check=False)
    assert p.returncode == 0, f"{name} not Ready: {p.stderr}\n{json.dumps(get_sbx(kube, name), indent=1)}"
    return get_sbx(kube, name)


def delete_and_prove_gone(kube, node, name):
    obj = get_sbx(kube, name)
    sid = obj.get("status", {}).get("sandboxID")
    kube.kubectl("delete", f"sandbox/{name}", "--timeout=60s")
    assert get_sbx(kube, name) is None, "the object is still there after kubectl delete"
    if sid:
        r = node.api.get(f"/v1/sandboxes/{sid}")
        assert r.status == 404, f"the agent still holds {sid}: {r}"


def run(node, sid, script):
    r = node.api.exec(sid, shell=script)
    assert r.exit_code == 0, r
    return r.stdout


def test_health_endpoints(operator):
    assert operator.probe("/healthz") == 200
    assert operator.probe("/readyz") == 200
    assert operator.probe("/nope") == 404


def test_apply_ready_exec_delete(kube, node, operator):
    kube.kubectl("apply", "-f", "-", input=manifest("box", env=[{"name": "GREETING", "value": "hello"}]))
    obj = wait_ready(kube, "box")
    st = obj["status"]
    assert "sandpit.dev/cleanup" in obj["metadata"]["finalizers"]
    assert st["phase"] == "Running"
    assert st["nodeName"] == NODE
    assert st["sandboxID"] == "sbx-" + obj["metadata"]["uid"]
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    assert st["startedAt"] and st["expiresAt"] > st["startedAt"]
    ready = condition(obj, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Running"
    assert ready["observedGeneration"] == obj["metadata"]["generation"] and ready["lastTransitionTime"]
    assert condition(obj, "Scheduled")["status"] == "True"

    # the sandbox on the node got the spec
    sb = node.api.sandbox(st["sandboxID"]).json()
    assert sb["template"] == "host" and sb["cpu"] == 0.5 and sb["memory"] == 128 << 20
    assert sb["pids"] == 128 and sb["timeout"] == 600
    assert sb["labels"] == {"test": "box", "sandpit.dev/managed-by": "sandpit-operator",
                            "sandpit.dev/namespace": "default", "sandpit.dev/name": "box"}
    assert run(node, st["sandboxID"], 'echo "$GREETING from $(id -un)"') == "hello from user\n"

    # a reconcile with nothing new writes nothing: the resourceVersion stays.
    # Proof that reconciles ran: every reconcile GETs the sandbox from the agent
    # (debug log); after two answered GETs the first reconcile has finished
    # (one key is never in two workers), with any write it would make.
    rv = obj["metadata"]["resourceVersion"]
    log_at = len(operator.log.read_text())
    answered = re.compile(rf"http GET \S+/v1/sandboxes/{st['sandboxID']}: 200$", re.M)
    wait_for(lambda: len(answered.findall(operator.log.read_text()[log_at:])) >= 2, 30,
             what="two reconciles of box after Ready (resync every 2 s)")
    assert get_sbx(kube, "box")["metadata"]["resourceVersion"] == rv
    writes = re.findall(r"^.*k8s (?:PATCH|PUT|POST) /apis/sandpit\.dev/\S+/sandboxes/box\b.*$",
                        operator.log.read_text()[log_at:], re.M)
    assert writes == [], writes
    out = kube.kubectl("get", "sbx", "box").stdout
    assert "Running" in out and NODE in out

    delete_and_prove_gone(kube, node, "box")
    assert node.api.list_ids() == []


def test_no_room_then_room(kube, node, operator):
    set_capacity(kube, "0.25")
    try:
        kube.kubectl("apply", "-f", "-", input=manifest("big", cpu="1"))
        wait_for(lambda: (condition(get_sbx(kube, "big"), "Ready") or {}).get("reason") == "Unschedulable", 30,
                 what="Ready=False Unschedulable")
        obj = get_sbx(kube, "big")
        ready = condition(obj, "Ready")
        assert ready["status"] == "False" and "no agent has room" in ready["message"], ready
        assert obj["status"]["phase"] == "Pending" and "nodeName" not in obj["status"]
        assert node.api.list_ids() == []
        events = kube.ok("GET", EVENTS)["items"]
        assert any(e["reason"] == "Unschedulable" and e["regarding"]["name"] == "big" for e in events), events
        out = kube.kubectl("describe", "sandbox", "big").stdout
        assert "Unschedulable" in out
        ltt = ready["lastTransitionTime"]

        set_capacity(kube, "2")
        obj = wait_ready(kube, "big")
        assert obj["status"]["nodeName"] == NODE
        assert condition(obj, "Ready")["lastTransitionTime"] >= ltt
        assert node.api.list_ids() == [obj["status"]["sandboxID"]]
    finally:
        set_capacity(kube, "2")
    delete_and_prove_gone(kube, node, "big")


def test_placed_sandboxes_use_up_capacity(kube, node, operator):
    set_capacity(kube, "1.5")
    try:
        kube.kubectl("apply", "-f", "-", input=manifest("first", cpu="1"))
        wait_ready(kube, "first")
        kube.kubectl("apply", "-f", "-", input=manifest("second", cpu="1"))
        wait_for(lambda: (condition(get_sbx(kube, "second"), "Ready") or {}).get("reason") == "Unschedulable",
                 30, what="the second sandbox Unschedulable")
        # freeing the room lets the second one in (the operator retries it)
        delete_and_prove_gone(kube, node, "first")
        obj = wait_ready(kube, "second")
        assert node.api.list_ids() == [obj["status"]["sandboxID"]]
    finally:
        set_capacity(kube, "2")
    delete_and_prove_gone(kube, node, "second")


def test_secret_env_reaches_the_process_not_the_object(kube, node, operator):
    value = "tok-" + secrets.token_hex(12)
    env = [{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "token"}}},
           {"name": "PLAIN", "value": "visible"}]
    kube.kubectl("apply", "-f", "-", input=manifest("sec", env=env))
    # the Secret does not exist yet: the sandbox waits, saying why
    wait_for(lambda: (condition(get_sbx(kube, "sec"), "Ready") or {}).get("reason") == "SecretNotFound", 30,
             what="Ready=False SecretNotFound")
    assert "api-key" in condition(get_sbx(kube, "sec"), "Ready")["message"]
    kube.kubectl("create", "secret", "generic", "api-key", f"--from-literal=token={value}")
    obj = wait_ready(kube, "sec")
    sid = obj["status"]["sandboxID"]
    # the process has the value (its output masks it, so compare inside)
    assert run(node, sid, f'[ "$API_TOKEN" = "{value}" ] && echo same; echo "$PLAIN"') == "same\nvisible\n"
    sb = node.api.sandbox(sid).json()
    assert sb["secret_env"] == ["API_TOKEN"] and "API_TOKEN" not in sb["env"]
    assert value not in json.dumps(obj), "the secret value is in the Sandbox object"
    assert value not in kube.kubectl("get", "sandbox", "sec", "-o", "yaml").stdout
    assert value not in operator.log.read_text(), "the secret value was logged"
    delete_and_prove_gone(kube, node, "sec")
    kube.kubectl("delete", "secret", "api-key")


def test_retry_after_create_is_idempotent(kube, node, operator):
    """A sandbox already on the node under the object's id (an earlier attempt
    that crashed before writing status) is adopted, not created twice."""
    kube.kubectl("apply", "-f", "-", input=manifest("adopt"))
    obj = wait_ready(kube, "adopt")
    sid = obj["status"]["sandboxID"]
    # forget the outcome in status, as if the write had never happened
    kube.ok("PATCH", f"{SBX}/adopt/status",
            {"status": {"phase": "Pending", "startedAt": None, "conditions": [
                {"type": "Ready", "status": "False", "reason": "Creating", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}},
            ctype="application/merge-patch+json")
    wait_for(lambda: (condition(get_sbx(kube, "adopt"), "Ready") or {}).get("status") == "True", 30,
             what="Ready again")
    assert node.api.list_ids() == [sid]
    assert f"already on {NODE} as {sid}: adopted" in operator.log.read_text()
    delete_and_prove_gone(kube, node, "adopt")


def test_readyz_before_the_informers_exist(kube, node, lease, tmp_path):
    """/readyz and /metrics answer while the operator is still setting up: its
    agent token file is a FIFO nobody writes yet, so it waits there before it
    has made its informers. On a loaded machine or a slower API server the
    kubelet's first probe lands there: it crashed the operator (NULL informer)."""
    fifo = tmp_path / "agent-token"
    os.mkfifo(fifo, 0o600)
    op = Operator(kube, SimpleNamespace(token_file=fifo), tmp_path, extra=["--identity", "early-probe"])
    try:
        wait_for(lambda: op.proc.poll() is not None or op.probe("/healthz") == 200, 30, what="/healthz")
        for path in ("/readyz", "/metrics", "/readyz"):
            st = op.probe(path)
            assert op.proc.poll() is None, f"the operator died on {path} before its informers existed:\n" + op.log_tail()
            assert st == (503 if path == "/readyz" else 200), (path, st)
        with open(fifo, "w") as f:
            f.write(node.token + "\n")
        wait_for(lambda: op.proc.poll() is not None or op.probe("/readyz") == 200, 30, what="/readyz after setup")
        assert op.proc.poll() is None, op.log_tail()
    finally:
        if op.proc.poll() is None:
            try:  # still blocked opening the FIFO: let it go on, then stop it
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        rc = op.stop()
    assert rc == 0, op.log_tail()


def test_bad_flags_fail_with_one_line(kube, node):
    p = subprocess.run([str(OPERATOR_BIN), "--agent-token-file", str(node.token_file)], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2 and "--kubeconfig" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run([str(OPERATOR_BIN), "--kubeconfig", kube.kubeconfig], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 2 and "--agent-token-file" in p.stderr
    p = subprocess.run([str(OPERATOR_BIN), "--kubeconfig", kube.kubeconfig, "--agent-token-file", "/nonexistent"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "agent token" in p.stderr


def patch_sbx(kube, name, spec):
    kube.ok("PATCH", f"{SBX}/{name}", {"spec": spec}, ctype="application/merge-patch+json")


def test_pause_and_resume_through_spec(kube, node, operator):
    kube.kubectl("apply", "-f", "-", input=manifest("nap"))
    obj = wait_ready(kube, "nap")
    sid, expires = obj["status"]["sandboxID"], obj["status"]["expiresAt"]
    run(node, sid, "echo 1 > /tmp/counter")

    patch_sbx(kube, "nap", {"paused": True})
    wait_for(lambda: get_sbx(kube, "nap")["status"]["phase"] == "Paused", 30, what="phase Paused")
    obj = get_sbx(kube, "nap")
    assert condition(obj, "Paused")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "False" and condition(obj, "Ready")["reason"] == "Paused"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert node.api.sandbox(sid).json()["state"] == "paused"
    assert node.api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}).status == 409
    # the deadline keeps running while paused (lifetime counts from startedAt)
    assert obj["status"]["expiresAt"] == expires

    patch_sbx(kube, "nap", {"paused": False})
    obj = wait_ready(kube, "nap")
    assert obj["status"]["phase"] == "Running" and condition(obj, "Paused")["status"] == "False"
    assert node.api.sandbox(sid).json()["state"] == "running"
    assert run(node, sid, "cat /tmp/counter") == "1\n"
    reasons = [e["reason"] for e in kube.ok("GET", EVENTS)["items"] if e["regarding"]["name"] == "nap"]
    assert "Paused" in reasons and "Resumed" in reasons, reasons
    delete_and_prove_gone(kube, node, "nap")


def test_expiry_retain_keeps_the_object_as_expired(kube, node, operator):
    kube.kubectl("apply", "-f", "-", input=manifest("short", timeout="4s", expiryPolicy="Retain"))
    obj = wait_ready(kube, "short")
    sid = obj["status"]["sandboxID"]
    wait_for(lambda: get_sbx(kube, "short")["status"]["phase"] == "Expired", 30, what="phase Expired")
    obj = get_sbx(kube, "short")
    assert condition(obj, "Expired")["status"] == "True"
    assert condition(obj, "Ready")["status"] == "False" and condition(obj, "Ready")["reason"] == "Expired"
    # the agent also removes it at its deadline by itself; either delete may still be finishing
    wait_for(lambda: node.api.sandbox(sid).status == 404, 15, what="the sandbox gone from the node")
    assert node.api.list_ids() == []
    delete_and_prove_gone(kube, node, "short")


def test_expiry_delete_deletes_the_object(kube, node, operator):
    kube.kubectl("apply", "-f", "-", input=manifest("gone", timeout="4s", expiryPolicy="Delete"))
    obj = wait_ready(kube, "gone")
    sid = obj["status"]["sandboxID"]
    wait_for(lambda: get_sbx(kube, "gone") is None, 30, what="the expired object deleted")
    wait_for(lambda: node.api.sandbox(sid).status == 404, 15, what="the sandbox gone from the node")
    assert node.api.list_ids() == []


def test_expiry_pause_pauses_and_a_later_timeout_resumes(kube, node, operator):
    """expiryPolicy Pause (E2B's autoPause): at the deadline the sandbox is
    paused, not stopped, with its files and processes kept; moving
    spec.timeout past now resumes it."""
    kube.kubectl("apply", "-f", "-", input=manifest("doze", timeout="4s", expiryPolicy="Pause"))
    obj = wait_ready(kube, "doze")
    sid = obj["status"]["sandboxID"]
    assert node.api.sandbox(sid).json()["on_timeout"] == "pause"
    run(node, sid, "echo kept > /tmp/mark; sleep 3600 >/dev/null 2>&1 & echo $! > /tmp/pid")
    wait_for(lambda: get_sbx(kube, "doze")["status"]["phase"] == "Paused", 30, what="phase Paused at the deadline")
    obj = get_sbx(kube, "doze")
    assert condition(obj, "Paused")["status"] == "True", obj["status"]
    assert condition(obj, "Paused")["reason"] == "DeadlineReached", obj["status"]
    assert condition(obj, "Expired") is None, obj["status"]
    sb = node.api.sandbox(sid).json()
    assert sb["state"] == "paused" and sb["deadline_paused"] is True, sb
    assert node.api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}).status == 409
    # spec.paused false alone does not resume it: it is past its deadline
    patch_sbx(kube, "doze", {"paused": False})
    gen = get_sbx(kube, "doze")["metadata"]["generation"]
    wait_for(lambda: get_sbx(kube, "doze")["status"].get("observedGeneration") == gen, 30,
             what="the operator saw spec.paused false")
    assert get_sbx(kube, "doze")["status"]["phase"] == "Paused"

    patch_sbx(kube, "doze", {"timeout": "10m"})
    obj = wait_ready(kube, "doze")
    assert obj["status"]["phase"] == "Running" and condition(obj, "Paused")["status"] == "False"
    assert run(node, sid, "cat /tmp/mark") == "kept\n"
    assert run(node, sid, "kill -0 $(cat /tmp/pid) && echo alive") == "alive\n"
    # the agent's deadline follows spec.timeout (10 min from creation)
    sb = node.api.sandbox(sid).json()
    assert sb["state"] == "running" and sb["expires_at"] == obj["status"]["expiresAt"], (sb, obj["status"])
    reasons = [e["reason"] for e in kube.ok("GET", EVENTS)["items"] if e["regarding"]["name"] == "doze"]
    assert "Paused" in reasons and "Resumed" in reasons, reasons
    delete_and_prove_gone(kube, node, "doze")


def test_lease_expiry_marks_node_lost(kube, node, operator):
    kube.kubectl("apply", "-f", "-", input=manifest("lost"))
    wait_ready(kube, "lost")
    # the agent "stops renewing": renewTime + leaseDurationSeconds is in the past
    lease_path = f"{LEASE}/sandpit-agent-{NODE}"
    kube.ok("PATCH", lease_path, {"spec": {"renewTime": micro_time(-7200)}}, ctype="application/merge-patch+json")
    try:
        wait_for(lambda: (condition(get_sbx(kube, "lost"), "Ready") or {}).get("reason") == "NodeLost", 30,
                 what="Ready=False NodeLost")
        obj = get_sbx(kube, "lost")
        assert obj["status"]["phase"] == "Failed"
        assert "stopped renewing its lease" in condition(obj, "Ready")["message"]
        # nothing new is placed on a lost node
        kube.kubectl("apply", "-f", "-", input=manifest("after"))
        wait_for(lambda: (condition(get_sbx(kube, "after"), "Ready") or {}).get("reason") == "Unschedulable", 30,
                 what="Unschedulable while the only node is lost")
        assert "0 live" in condition(get_sbx(kube, "after"), "Ready")["message"]
    finally:
        kube.ok("PATCH", lease_path, {"spec": {"renewTime": micro_time()}}, ctype="application/merge-patch+json")
    wait_ready(kube, "after")
    # deleting the lost one still reaches the node (it is back) and removes it there
    delete_and_prove_gone(kube, node, "lost")
    delete_and_prove_gone(kube, node, "after")
    assert node.api.list_ids() == []
