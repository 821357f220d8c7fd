"""The operator as a new user meets it on a real cluster (issue 13): what the
real kube-apiserver showed and the fixture did not, and what a user does
with kubectl. Runs on both servers (cluster.py): the fixture API server by
default, the real control plane under `make test-k8s`; the tests marked
real_only need what the fixture does not model (server-side apply, the
garbage collector, an API server restart with etcd kept).

Uses test_operator's fixtures: the API server with the CRDs, one agent on TCP
with its Lease, the operator."""

import json
import subprocess
import threading

import pytest
import yaml

from conftest import REPO, rand_suffix, wait_for
from test_kube_apiserver import KUBECTL
from test_operator import (EVENTS, SBX, condition, delete_and_prove_gone, get_sbx, kube, lease,  # noqa: F401
                           manifest, node, operator, operator_alive, patch_sbx, wait_ready)

TEMPLATES = "/apis/sandpit.dev/v1alpha1/namespaces/{ns}/sandboxtemplates"


def sbx_path(ns):
    return f"/apis/sandpit.dev/v1alpha1/namespaces/{ns}/sandboxes"


def phase(kube, name, ns="default"):
    st, _, o = kube.request("GET", f"{sbx_path(ns)}/{name}")
    return o.get("status", {}).get("phase") if st == 200 else None


def wait_gone(kube, name, ns="default", timeout=60):
    wait_for(lambda: kube.request("GET", f"{sbx_path(ns)}/{name}")[0] == 404, timeout, interval=0.2,
             what=f"sandbox {ns}/{name} to be gone")


def new_namespace(kube):
    ns = "t-" + rand_suffix(6)
    kube.kubectl("create", "namespace", ns)
    return ns


def test_smallest_sandbox_gets_the_default_template(kube, node, operator, templates_dir):
    """Fault 3: spec.template was required. Now `spec` may be left out; the
    template defaults to `default`, here a SandboxTemplate of that name
    pointing at the agents' `host` template."""
    ns = new_namespace(kube)
    kube.ok("POST", TEMPLATES.format(ns=ns), {
        "apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": "default"},
        "spec": {"source": {"path": str(templates_dir / "host")}, "resources": {"cpu": "250m", "memory": "64Mi"}}})
    kube.kubectl("apply", "-n", ns, "-f", "-", input="apiVersion: sandpit.dev/v1alpha1\nkind: Sandbox\n"
                                                        "metadata:\n  name: tiny\n")
    obj = get_sbx_ns(kube, ns, "tiny")
    assert obj["spec"]["template"] == "default", obj["spec"]
    p = kube.kubectl("wait", "-n", ns, "--for=condition=Ready", "sandbox/tiny", "--timeout=60s", check=False)
    assert p.returncode == 0, f"not Ready: {p.stderr}\n{json.dumps(get_sbx_ns(kube, ns, 'tiny'), indent=1)}"
    sid = get_sbx_ns(kube, ns, "tiny")["status"]["sandboxID"]
    sb = node.api.sandbox(sid).json()
    assert sb["template"] == "host" and sb["cpu"] == 0.25 and sb["memory"] == 64 << 20
    kube.kubectl("delete", "-n", ns, "sandbox/tiny", "--timeout=60s")
    assert node.api.sandbox(sid).status == 404
    kube.kubectl("delete", "namespace", ns, "--timeout=90s")


def get_sbx_ns(kube, ns, name):
    st, _, obj = kube.request("GET", f"{sbx_path(ns)}/{name}")
    return obj if st == 200 else None


def test_allow_port_protocol_default_reaches_the_agent_as_tcp(kube, node, operator):
    """Fault 1: the CRD defaults a port's protocol to TCP (inside a list
    item); the operator must hand the agent "tcp". This agent has no sandbox
    networking (--sandbox-cidr, test_network.py), so the create fails, but
    with the agent's networking message: the protocol was accepted."""
    name = "proto-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name, network={"egress": {
        "policy": "AllowList", "allow": [{"cidr": "198.18.0.0/15", "ports": [{"port": 443}, {"port": 53,
                                                                                          "protocol": "UDP"}]}]}}))
    ports = get_sbx(kube, name)["spec"]["network"]["egress"]["allow"][0]["ports"]
    assert ports == [{"port": 443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], ports
    wait_for(lambda: phase(kube, name) == "Failed", 60, interval=0.2, what=f"{name} Failed")
    msg = condition(get_sbx(kube, name), "Ready")["message"]
    assert "protocol" not in msg and "--sandbox-cidr" in msg, msg
    delete_and_prove_gone(kube, node, name)


def test_events_are_recorded_and_described(kube, node, operator):
    """Fault 2: every Event was refused (generateName "name." ends in a dot).
    kubectl describe shows them; their names are "<object>.<hex>"."""
    name = "ev-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    wait_ready(kube, name)

    def events():
        return [e for e in kube.ok("GET", EVENTS)["items"] if e["regarding"]["name"] == name]

    evs = wait_for(lambda: {"Scheduled", "Started"} <= {e["reason"] for e in events()} and events(), 30,
                   what="Scheduled and Started events")
    for e in evs:
        assert e["metadata"]["name"].startswith(name + "."), e["metadata"]
        assert e["reportingController"] and e["regarding"]["uid"]
    out = kube.kubectl("describe", "sandbox", name).stdout
    events_part = out.split("Events:", 1)[1]
    assert "<none>" not in events_part.splitlines()[0], out
    assert "Scheduled" in events_part and "Started" in events_part, out
    delete_and_prove_gone(kube, node, name)


class Watcher:
    """`kubectl get sbx NAME -w` in the background, its lines collected."""

    def __init__(self, kube, *args):
        self.proc = subprocess.Popen([KUBECTL, "--kubeconfig", kube.kubeconfig, "--cache-dir",
                                      str(kube.dir / "cache"), "get", "sbx", *args, "-w"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.t.join(10)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return err


def test_get_watch_prints_phase_changes(kube, node, operator):
    name = "w-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    wait_ready(kube, name)
    w = Watcher(kube, name)
    try:
        wait_for(lambda: any("Running" in ln for ln in w.lines), 30, what="the first line (Running)")
        patch_sbx(kube, name, {"paused": True})
        wait_for(lambda: any("Paused" in ln for ln in w.lines), 30, what="a Paused line")
        patch_sbx(kube, name, {"paused": False})
        wait_for(lambda: any("Running" in ln for ln in w.lines[w.lines.index(next(
            ln for ln in w.lines if "Paused" in ln)):]), 30, what="a Running line after Paused")
    finally:
        err = w.stop()
    assert w.lines[0].split()[0] == "NAME", w.lines
    assert all(ln.split()[0] in ("NAME", name) for ln in w.lines), w.lines
    assert "error" not in err.lower(), err
    delete_and_prove_gone(kube, node, name)


def test_update_with_a_stale_resource_version_conflicts(kube, node, operator):
    name = "rv-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    old = wait_ready(kube, name)
    kube.ok("PATCH", f"{SBX}/{name}", {"metadata": {"labels": {"touched": "yes"}}},
            ctype="application/merge-patch+json")
    stale = json.loads(json.dumps(old))
    stale["spec"]["paused"] = True
    st, _, body = kube.request("PUT", f"{SBX}/{name}", stale)
    assert st == 409 and body["reason"] == "Conflict", (st, body)
    assert "the object has been modified" in body["message"], body
    p = kube.kubectl("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert p.returncode != 0 and "the object has been modified" in p.stderr, p.stderr
    obj = get_sbx(kube, name)
    assert not obj["spec"].get("paused") and obj["metadata"]["labels"]["touched"] == "yes"
    assert phase(kube, name) == "Running"
    delete_and_prove_gone(kube, node, name)


def test_cel_rules_keep_the_template_immutable(kube, node, operator):
    name = "cel-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    wait_ready(kube, name)
    st, _, body = kube.request("PATCH", f"{SBX}/{name}", {"spec": {"template": "other"}},
                               ctype="application/merge-patch+json")
    assert st == 422 and body["reason"] == "Invalid", (st, body)
    assert any(c.get("field") == "spec.template" for c in body["details"]["causes"]), body
    p = kube.kubectl("patch", "sandbox", name, "--type", "merge", "-p", '{"spec":{"template":"other"}}', check=False)
    assert p.returncode != 0 and "spec.template" in p.stderr, p.stderr
    assert get_sbx(kube, name)["spec"]["template"] == "host"
    delete_and_prove_gone(kube, node, name)


def test_namespace_deletion_removes_its_sandboxes_from_the_node(kube, node, operator):
    """Deleting a namespace deletes its Sandboxes (on the real server: the
    controller manager's namespace controller); the finalizer removes their
    sandboxes from the node before the objects and the namespace go."""
    ns = new_namespace(kube)
    names = [f"n{i}-{rand_suffix(4)}" for i in range(2)]
    for n in names:
        kube.kubectl("apply", "-n", ns, "-f", "-", input=manifest(n))
    sids = []
    for n in names:
        p = kube.kubectl("wait", "-n", ns, "--for=condition=Ready", f"sandbox/{n}", "--timeout=60s", check=False)
        assert p.returncode == 0, p.stderr
        sids.append(get_sbx_ns(kube, ns, n)["status"]["sandboxID"])
    assert set(sids) <= set(node.api.list_ids())
    kube.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(lambda: kube.request("GET", f"/api/v1/namespaces/{ns}")[0] == 404, 120, interval=0.3,
             what=f"namespace {ns} to be gone")
    for sid in sids:
        assert node.api.sandbox(sid).status == 404, f"{sid} is still on the node"


@pytest.mark.real_only("ConfigMaps and the garbage collector")
def test_garbage_collector_deletes_an_owned_sandbox(kube, node, operator):
    owner = kube.ok("POST", "/api/v1/namespaces/default/configmaps",
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner-" + rand_suffix(5)}})
    name = "owned-" + rand_suffix(5)
    m = json.loads(manifest(name))
    m["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                                         "uid": owner["metadata"]["uid"]}]
    kube.kubectl("apply", "-f", "-", input=json.dumps(m))
    sid = wait_ready(kube, name)["status"]["sandboxID"]
    kube.ok("DELETE", f"/api/v1/namespaces/default/configmaps/{owner['metadata']['name']}", want=(200, 202))
    wait_gone(kube, name, timeout=120)
    assert node.api.sandbox(sid).status == 404, f"{sid} is still on the node"


def example_manifests():
    """Every Kubernetes manifest in examples/ (the .json there is an agent
    API request body, not a manifest)."""
    return sorted(p for p in (REPO / "examples").iterdir() if p.suffix in (".yaml", ".yml"))


@pytest.mark.real_only("server-side apply")
def test_server_side_apply_of_every_example(kube, node, operator):
    """`kubectl apply --server-side` of every manifest in examples/, unchanged,
    in a namespace of its own: the real server accepts them (the port
    protocol defaulted), a second apply changes nothing, and the field
    manager owns what it wrote. The example's template and egress need a node
    this test does not have, so its Sandbox does not become Ready here."""
    assert example_manifests()
    for f in example_manifests():
        ns = new_namespace(kube)
        p = kube.kubectl("apply", "--server-side", "--field-manager", "sandpit-test", "-n", ns, "-f", str(f))
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        assert len(p.stdout.splitlines()) == len(docs), p.stdout
        rvs = {}
        for d in docs:
            g = kube.kubectl("get", "-n", ns, d["kind"].lower(), d["metadata"]["name"], "-o", "json",
                             "--show-managed-fields")
            o = json.loads(g.stdout)
            rvs[(d["kind"], d["metadata"]["name"])] = o["metadata"]["resourceVersion"]
            assert any(m["manager"] == "sandpit-test" for m in o["metadata"]["managedFields"]), o["metadata"]
            if d["kind"] == "Sandbox":
                for a in o["spec"].get("network", {}).get("egress", {}).get("allow", []):
                    assert all(pt["protocol"] in ("TCP", "UDP") for pt in a.get("ports", [])), a
        kube.kubectl("apply", "--server-side", "--field-manager", "sandpit-test", "-n", ns, "-f", str(f))
        for (kind, n), rv in rvs.items():
            if kind == "Sandbox":
                continue  # the operator writes its status and finalizer
            g = kube.kubectl("get", "-n", ns, kind.lower(), n, "-o", "jsonpath={.metadata.resourceVersion}")
            assert g.stdout == rv, f"a second server-side apply changed {kind} {n}"
        kube.kubectl("delete", "namespace", ns, "--timeout=120s")


def snapshot(kube, ns, docs):
    """Each object's resourceVersion (a Sandbox's spec instead: the operator
    writes its status and finalizer)."""
    out = {}
    for d in docs:
        o = json.loads(kube.kubectl("get", "-n", ns, d["kind"].lower(), d["metadata"]["name"], "-o", "json").stdout)
        out[(d["kind"], d["metadata"]["name"])] = o["spec"] if d["kind"] == "Sandbox" else o["metadata"]["resourceVersion"]
    return out


def test_client_side_apply_of_every_example(kube, node, operator):
    """`kubectl apply` of every manifest in examples/, unchanged, twice: the
    second changes nothing. (kubectl may still say "configured": a Secret's
    stringData, and a custom resource's lists, which a JSON merge patch
    replaces whole, with the defaults filled in again by the server.)"""
    assert example_manifests()
    for f in example_manifests():
        ns = new_namespace(kube)
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        p = kube.kubectl("apply", "-n", ns, "-f", str(f))
        assert p.stdout.count(" created") == len(docs), p.stdout
        before = snapshot(kube, ns, docs)
        kube.kubectl("apply", "-n", ns, "-f", str(f))
        assert snapshot(kube, ns, docs) == before
        kube.kubectl("delete", "namespace", ns, "--timeout=120s")


@pytest.mark.real_only("restarts kube-apiserver with its etcd data kept")
def test_operator_survives_an_api_server_restart_losing_no_event(kube, node, operator):
    s = rand_suffix(4)
    a, b, c = (f"r{x}-{s}" for x in "abc")
    for n in (a, b):
        kube.kubectl("apply", "-f", "-", input=manifest(n))
    sids = {n: wait_ready(kube, n)["status"]["sandboxID"] for n in (a, b)}
    log_from = operator.log.stat().st_size
    kube.restart()
    assert kube.alive()
    # changes right after the restart, while the operator is reconnecting
    kube.ok("POST", SBX, json.loads(manifest(c)))
    patch_sbx(kube, a, {"paused": True})
    kube.ok("DELETE", f"{SBX}/{b}", want=(200, 202))
    wait_ready(kube, c)
    wait_for(lambda: phase(kube, a) == "Paused", 60, interval=0.3, what=f"{a} Paused")
    wait_gone(kube, b)
    assert node.api.sandbox(sids[b]).status == 404
    assert node.api.sandbox(sids[a]).json()["state"] == "paused"
    assert operator.proc.poll() is None and operator.probe("/readyz") == 200
    assert operator.log.stat().st_size > log_from
    for n in (a, c):
        delete_and_prove_gone(kube, node, n)
    assert node.api.list_ids() == []


def test_wait_for_ready_and_delete_wait(kube, node, operator):
    """kubectl wait --for=condition=Ready, then for deletion."""
    name = "kw-" + rand_suffix(5)
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    p = kube.kubectl("wait", "--for=condition=Ready", f"sandbox/{name}", "--timeout=60s")
    assert "condition met" in p.stdout, p.stdout
    sid = get_sbx(kube, name)["status"]["sandboxID"]
    kube.kubectl("delete", "sandbox", name, "--wait=false")
    kube.kubectl("wait", "--for=delete", f"sandbox/{name}", "--timeout=60s")
    assert get_sbx(kube, name) is None
    assert node.api.sandbox(sid).status == 404


def test_generate_name_is_validated_as_a_name_prefix(kube):
    """What the real server does and the fixture did not (fault 2): a
    generateName ending in '.' is refused; one ending in '-' is a prefix."""
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "eventTime": "2026-11-22T10:00:00.000000Z",
          "reportingController": "sandpit.dev/operator", "reportingInstance": "op-0", "action": "Create",
          "reason": "Created", "type": "Normal", "note": "x",
          "regarding": {"apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox", "name": "hello",
                        "namespace": "default"}}
    st, _, err = kube.request("POST", EVENTS, dict(ev, metadata={"generateName": "hello."}))
    assert st == 422 and err["reason"] == "Invalid", (st, err)
    assert 'metadata.generateName: Invalid value: "hello."' in err["message"], err
    made = kube.ok("POST", EVENTS, dict(ev, metadata={"generateName": "hello-"}))
    assert made["metadata"]["name"].startswith("hello-") and len(made["metadata"]["name"]) > len("hello-")
    kube.ok("DELETE", f"{EVENTS}/{made['metadata']['name']}")
