"""examples/: every Kubernetes manifest applied to the API server (the
fixture in `make test`, the real one under `make test-k8s`) and deleted; the
GitOps objects (Argo CD Application, Flux GitRepository and HelmRelease), whose
CRDs no test server has, checked as YAML: kinds, the chart path, and their
values accepted by the chart's schema; the Argo CD health check run on
Sandboxes in each state (with lua, when installed); the E2B scripts and MCP
configurations checked for what they must say. On the real server the chart
itself is installed and upgraded with helm (the agent token kept)."""

import base64
import json
import py_compile
import shutil
import subprocess
import tempfile

import pytest
import yaml

from conftest import REPO
from test_helm import CHART, helm
from test_kube_apiserver import KUBECTL

EX = REPO / "examples"
GITOPS = EX / "gitops"

if not __import__("os").path.exists(KUBECTL):
    pytest.skip(f"kubectl is not installed ({KUBECTL})", allow_module_level=True)


@pytest.fixture(scope="module")
def kube():
    from cluster import new_kube
    tmp = tempfile.mkdtemp(prefix="sandpit-examples-kubeapi-")
    k = new_kube(tmp)
    k.kubectl("apply", "-f", str(REPO / "crds"))
    yield k
    k.stop()
    shutil.rmtree(tmp)


def manifests():
    return sorted(p for p in EX.iterdir() if p.suffix in (".yaml", ".yml"))


def docs_of(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_examples_asked_for_exist():
    names = {p.name for p in manifests()}
    assert {"sandbox.yaml", "python-sandbox.yaml", "allowlist-sandbox.yaml", "secret-env-sandbox.yaml",
            "warm-pool-template.yaml"} <= names
    kinds = {(p.name, d["kind"]) for p in manifests() for d in docs_of(p)}
    assert ("python-sandbox.yaml", "SandboxTemplate") in kinds
    py = docs_of(EX / "python-sandbox.yaml")
    assert py[0]["spec"]["source"]["image"].startswith("python:") and py[1]["spec"]["template"] == "python"
    allow = docs_of(EX / "allowlist-sandbox.yaml")[0]["spec"]["network"]["egress"]
    assert allow["policy"] == "AllowList" and allow["allow"]
    env = docs_of(EX / "secret-env-sandbox.yaml")[1]["spec"]["env"]
    assert any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "openai-key" for e in env)
    assert docs_of(EX / "warm-pool-template.yaml")[0]["spec"]["warmPool"]["sizePerNode"] > 0
    # no manifest names a namespace: each applies wherever it is pointed
    for p in manifests():
        for d in docs_of(p):
            assert "namespace" not in d["metadata"], (p.name, d["metadata"])


@pytest.mark.parametrize("name", [p.name for p in manifests()])
def test_each_manifest_is_accepted_by_the_server(kube, name):
    path = EX / name
    docs = docs_of(path)
    ns = "examples-" + name.split(".")[0].replace("_", "-")[:40]
    kube.kubectl("create", "namespace", ns)
    try:
        p = kube.kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(path))
        assert p.stdout.count("(server dry run)") == len(docs), p.stdout
        p = kube.kubectl("apply", "-n", ns, "-f", str(path))
        assert p.stdout.count(" created") == len(docs), p.stdout
        for d in docs:
            kind = d["kind"].lower()
            if "/" in d["apiVersion"]:
                kind += "." + d["apiVersion"].split("/")[0]
            got = json.loads(kube.kubectl("get", "-n", ns, kind, d["metadata"]["name"], "-o", "json").stdout)
            assert got["metadata"]["name"] == d["metadata"]["name"]
            if "spec" in d:
                for k in d["spec"]:
                    assert k in got["spec"], (name, k)
        kube.kubectl("delete", "-n", ns, "-f", str(path), "--timeout=60s")
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def render_with(values, tmp_path):
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    out = helm("template", "sandpit", str(CHART), "--namespace", "sandpit-system", "-f", str(f)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_argocd_application(tmp_path):
    app = docs_of(GITOPS / "argocd-application.yaml")
    assert len(app) == 1
    app = app[0]
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    src = app["spec"]["source"]
    assert src["path"] == "charts/sandpit" and (REPO / src["path"] / "Chart.yaml").exists()
    assert src["helm"]["releaseName"] == "sandpit"
    assert app["spec"]["destination"]["namespace"] == "sandpit-system"
    # its values pass the chart's schema, and the Secret it tells Argo CD to
    # leave alone is the chart's agent token under that release name
    docs = render_with(src["helm"]["valuesObject"], tmp_path)
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    ignored = {i["name"] for i in app["spec"]["ignoreDifferences"] if i["kind"] == "Secret"}
    assert ignored and ignored <= secrets, (ignored, secrets)


def test_flux_helmrelease(tmp_path):
    docs = docs_of(GITOPS / "flux-helmrelease.yaml")
    by_kind = {d["kind"]: d for d in docs}
    repo, rel = by_kind["GitRepository"], by_kind["HelmRelease"]
    assert repo["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert rel["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    spec = rel["spec"]["chart"]["spec"]
    assert spec["chart"] == "./charts/sandpit" and (REPO / spec["chart"] / "Chart.yaml").exists()
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
    assert repo["metadata"]["namespace"] == rel["metadata"]["namespace"]
    assert rel["spec"]["install"]["crds"] == "Create" and rel["spec"]["upgrade"]["crds"] == "CreateReplace"
    render_with(rel["spec"]["values"], tmp_path)


def lua_table(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_table(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "{" + ", ".join(lua_table(x) for x in v) + "}"
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


def test_argocd_health_check():
    lua = (GITOPS / "argocd-health-sandbox.lua").read_text()
    cm = docs_of(GITOPS / "argocd-cm-health.yaml")[0]
    assert cm["data"]["resource.customizations.health.sandpit.dev_Sandbox"] == lua, \
        "argocd-cm-health.yaml's copy differs from argocd-health-sandbox.lua"
    exe = shutil.which("lua5.4") or shutil.which("lua")
    if not exe:
        pytest.fail("no lua interpreter: mk/deps.sh installs lua5.4 (make deps)", pytrace=False)

    def cond(status, reason, message=""):
        return {"status": {"phase": "Pending" if status != "True" else "Running",
                           "conditions": [{"type": "Scheduled", "status": "True", "reason": "Scheduled"},
                                          {"type": "Ready", "status": status, "reason": reason,
                                           "message": message}]}}
    cases = [
        ({}, "Progressing"),
        (cond("True", "Running"), "Healthy"),
        (cond("False", "Creating", "creating on node-1"), "Progressing"),
        (cond("False", "NodeLost"), "Degraded"),
        (cond("False", "InvalidTemplate", "no template py"), "Degraded"),
        ({"status": {"phase": "Failed"}}, "Degraded"),
        ({"status": {"phase": "Paused", "conditions": [{"type": "Ready", "status": "False", "reason": "Paused"}]}},
         "Suspended"),
        ({"status": {"phase": "Expired"}}, "Healthy"),
    ]
    for obj, want in cases:
        prog = f"obj = {lua_table(obj)}\nlocal f = function()\n{lua}\nend\nlocal hs = f()\nprint(hs.status)\nprint(hs.message)\n"
        p = subprocess.run([exe, "-"], input=prog, capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, p.stderr
        status, message = p.stdout.splitlines()[:2]
        assert status == want, (obj, p.stdout)
        assert message
    assert "no template py" in subprocess.run(
        [exe, "-"], input=f"obj = {lua_table(cond('False', 'InvalidTemplate', 'no template py'))}\n"
        f"local f = function()\n{lua}\nend\nprint(f().message)\n", capture_output=True, text=True).stdout


def test_e2b_scripts(tmp_path):
    py = EX / "e2b" / "hello.py"
    py_compile.compile(str(py), cfile=str(tmp_path / "hello.pyc"), doraise=True)
    text = py.read_text()
    for want in ("from e2b import Sandbox", "E2B_API_KEY", "E2B_API_URL", "E2B_SANDBOX_URL", "print(1+1)", "kill()"):
        assert want in text, want
    mjs = EX / "e2b" / "hello.mjs"
    assert "from 'e2b'" in mjs.read_text()
    node = shutil.which("node")
    if node:
        p = subprocess.run([node, "--check", str(mjs)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
    # without the environment the script says what to set, before any network
    p = subprocess.run(["python3", "-c", "import sys, types; sys.modules['e2b'] = types.SimpleNamespace(Sandbox=None);"
                        f"exec(open({str(py)!r}).read())"], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin"})
    assert p.returncode != 0 and "E2B_API_KEY is not set" in p.stderr, p.stderr


def test_mcp_client_configurations():
    for name in ("mcp.json", "claude_desktop_config.json"):
        cfg = json.loads((EX / "mcp" / name).read_text())
        s = cfg["mcpServers"]["sandpit"]
        if "url" in s:
            assert s["type"] == "http" and s["url"].endswith("/mcp") and "X-API-KEY" in s["headers"]
        else:
            assert s["args"][:2] == ["mcp", "--url"] and s["args"][2].endswith("/mcp")
            assert "SANDPIT_API_KEY" in s["env"]


@pytest.mark.real_only("Deployments, DaemonSets, PodDisruptionBudgets and lookup need the real API server")
def test_helm_install_and_upgrade_on_the_server(kube, tmp_path):
    """`helm install` and `helm upgrade` of the chart with the gateway on:
    every object accepted by the real server; the agent token kept across
    the upgrade (lookup); `helm uninstall` removes the release."""
    ns = "sandpit-helm-install"
    base = ["--kubeconfig", kube.kubeconfig, "--namespace", ns]
    sets = ["--set", "operator.gateway.enabled=true", "--set", "agent.blockedCIDRs={198.18.0.0/24}"]
    try:
        helm("install", "sp", str(CHART), *base, "--create-namespace", *sets)
        token = kube.kubectl("get", "-n", ns, "secret", "sp-sandpit-agent-token", "-o",
                             "jsonpath={.data.token}").stdout
        assert len(base64.b64decode(token)) == 48
        for kind, name in (("deployment", "sp-sandpit-operator"), ("daemonset", "sp-sandpit-agent"),
                           ("service", "sp-sandpit-gateway"), ("poddisruptionbudget", "sp-sandpit-operator"),
                           ("role", "sp-sandpit-api-keys"), ("clusterrole", "sp-sandpit-gateway-auth")):
            kube.kubectl("get", "-n", ns, kind, name)
        helm("upgrade", "sp", str(CHART), *base, *sets, "--set", "operator.replicas=3",
             "--set", "agent.runtime=crun")
        assert kube.kubectl("get", "-n", ns, "secret", "sp-sandpit-agent-token", "-o",
                            "jsonpath={.data.token}").stdout == token, "the upgrade changed the agent token"
        dep = json.loads(kube.kubectl("get", "-n", ns, "deployment", "sp-sandpit-operator", "-o", "json").stdout)
        assert dep["spec"]["replicas"] == 3
        ds = json.loads(kube.kubectl("get", "-n", ns, "daemonset", "sp-sandpit-agent", "-o", "json").stdout)
        assert "--runtime=crun" in ds["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "STATUS: deployed" in helm("status", "sp", *base).stdout
        helm("uninstall", "sp", *base, "--wait", "--timeout", "60s")
        p = kube.kubectl("get", "clusterrole", "sp-sandpit-operator", check=False)
        assert p.returncode != 0 and "NotFound" in p.stderr
    finally:
        helm("uninstall", "sp", *base, check=False)
        kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        kube.kubectl("delete", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=sp",
                     "--ignore-not-found", check=False)
