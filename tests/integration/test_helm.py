"""The Helm chart (charts/sandpit): `helm lint --strict`, what `helm template`
renders, values checked by values.schema.json, and the rendered operator and
agent commands run for real: both binaries start with exactly the arguments
of the rendered Deployment and DaemonSet, in-cluster (their service account
files bind-mounted where a pod has them, inside a private mount namespace),
against the fixture API server, and a Sandbox applied with kubectl becomes
Ready and is deleted through the finalizer.

helm comes from mk/tools.sh (run by `make test`); see docs/helm.md."""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import AGENTS, REPO, Agent, Client, find_free_port, stop_agent, tool_path, wait_for, write_token_file
from cluster import new_kube
from test_kube_apiserver import KUBECTL

HELM = tool_path("helm")
CHART = REPO / "charts" / "sandpit"
NS = "sandpit-system"
OPERATOR_BIN = Path(os.environ.get("SANDPIT_OPERATOR_BIN") or REPO / "build" / "bin" / "sandpit-operator")
TOKEN_DIR = "/etc/sandpit/agent-token"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

if not os.path.exists(HELM):
    pytest.skip(f"helm is not installed ({HELM}; mk/tools.sh installs it)", allow_module_level=True)
if not os.path.exists(KUBECTL):
    pytest.skip(f"kubectl is not installed ({KUBECTL}; mk/tools.sh installs it)", allow_module_level=True)


def helm(*args, check=True):
    p = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"helm {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def render(*sets, crds=False):
    args = ["template", "t", str(CHART), "--namespace", NS]
    if crds:
        args.append("--include-crds")
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def find(docs, kind, suffix=""):
    got = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(got) == 1, f"{kind} *{suffix}: {len(got)} rendered"
    return got[0]


def container(docs, kind):
    return find(docs, kind)["spec"]["template"]["spec"]["containers"][0]


def test_lint_strict():
    p = helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in p.stdout


def test_renders_every_part():
    docs = render(crds=True)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted([
        ("CustomResourceDefinition", "sandboxes.sandpit.dev"),
        ("CustomResourceDefinition", "sandboxtemplates.sandpit.dev"),
        ("ServiceAccount", "t-sandpit-operator"), ("ServiceAccount", "t-sandpit-agent"),
        ("Secret", "t-sandpit-agent-token"), ("Secret", "t-sandpit-agent-tls"),
        ("ClusterRole", "t-sandpit-operator"), ("ClusterRoleBinding", "t-sandpit-operator"),
        ("Role", "t-sandpit-operator-leases"), ("RoleBinding", "t-sandpit-operator-leases"),
        ("Role", "t-sandpit-agent-leases"), ("RoleBinding", "t-sandpit-agent-leases"),
        ("Deployment", "t-sandpit-operator"), ("DaemonSet", "t-sandpit-agent"),
        ("PodDisruptionBudget", "t-sandpit-operator"), ("Pod", "t-sandpit-test"),
        ("ServiceAccount", "t-sandpit-test"), ("Role", "t-sandpit-test"), ("RoleBinding", "t-sandpit-test"),
    ]), kinds
    # the gateway's objects come with operator.gateway.enabled (auth: keys)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in render("operator.gateway.enabled=true")}
    assert {("Service", "t-sandpit-gateway"), ("ClusterRole", "t-sandpit-gateway-auth"),
            ("ClusterRoleBinding", "t-sandpit-gateway-auth"), ("Role", "t-sandpit-api-keys"),
            ("RoleBinding", "t-sandpit-api-keys")} <= kinds, kinds
    # the chart's CRDs are the repository's (charts/sandpit/crds links to crds/)
    for name in ("sandboxes", "sandboxtemplates"):
        want = yaml.safe_load((REPO / "crds" / f"sandpit.dev_{name}.yaml").read_text())
        assert find(docs, "CustomResourceDefinition", f"{name}.sandpit.dev") == want
    for d in docs:
        if d["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == NS, d["metadata"]
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sandpit", d["metadata"]


def test_the_token_is_random_and_mounted_by_both():
    a = find(render(), "Secret", "agent-token")["data"]["token"]
    b = find(render(), "Secret", "agent-token")["data"]["token"]
    assert a != b and len(a) >= 64  # 48 random characters, base64
    docs = render()
    for kind in ("Deployment", "DaemonSet"):
        pod = find(docs, kind)["spec"]["template"]["spec"]
        vol = [v for v in pod["volumes"] if v["name"] == "agent-token"][0]
        assert vol["secret"]["secretName"] == "t-sandpit-agent-token" and vol["secret"]["defaultMode"] == 0o400
        c = pod["containers"][0]
        assert {"name": "agent-token", "mountPath": TOKEN_DIR, "readOnly": True} in c["volumeMounts"]
        assert any(a.endswith(f"-token-file={TOKEN_DIR}/token") for a in c["args"]), c["args"]
    # a Secret the user manages instead: none rendered, both mount theirs
    docs = render("agentToken.existingSecret=mine")
    assert not [d for d in docs if d["kind"] == "Secret" and not d["metadata"]["name"].endswith("-agent-tls")]
    for kind in ("Deployment", "DaemonSet"):
        vols = find(docs, kind)["spec"]["template"]["spec"]["volumes"]
        assert [v for v in vols if v["name"] == "agent-token"][0]["secret"]["secretName"] == "mine"


def test_gateway_off_by_default_and_on_every_replica():
    docs = render()
    assert not [d for d in docs if d["kind"] == "Service"]
    assert not [a for a in container(docs, "Deployment")["args"] if a.startswith("--gateway")]
    docs = render("operator.gateway.enabled=true", "operator.gateway.port=3100",
                  "operator.gateway.namespace=e2b", "operator.gateway.internet=true")
    c = container(docs, "Deployment")
    for a in ("--gateway-listen=0.0.0.0:3100", "--gateway-namespace=e2b", "--gateway-create-timeout=60s",
              "--gateway-internet=true", "--gateway-auth=keys"):
        assert a in c["args"], c["args"]
    assert {"name": "gateway", "containerPort": 3100} in c["ports"]
    svc = find(docs, "Service", "gateway")
    assert svc["spec"]["ports"] == [{"name": "gateway", "port": 3100, "targetPort": "gateway"}]
    # MCP sessions and envd watchers live in one replica: a client stays on it
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    assert svc["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 10800
    pod_labels = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    # replicas stay 2: the gateway runs on each, not only on the leader
    assert find(docs, "Deployment")["spec"]["replicas"] == 2
    p = helm("template", "t", str(CHART), "--set", "operator.gateway.namespace=Bad_NS", check=False)
    assert p.returncode != 0 and "namespace" in p.stderr, p.stderr


def test_agent_pod_shape():
    docs = render("agent.sandboxCIDR=198.18.0.0/16", "agent.blockedCIDRs[0]=198.19.0.0/24",
                  "agent.blockedCIDRs[1]=198.19.1.0/24", "agent.capacity.cpu=3",
                  "agent.buildFetchAllow[0]=198.18.7.0/24")
    pod = find(docs, "DaemonSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["hostNetwork"] is True and c["securityContext"] == {"privileged": True}
    state = [m for m in c["volumeMounts"] if m["name"] == "state"][0]
    assert state["mountPropagation"] == "Bidirectional", "the agent's mounts must reach runc and the host"
    args = c["args"]
    for want in ("--in-cluster", "--node-name=$(NODE_NAME)", "--sandbox-cidr=198.18.0.0/16",
                 "--blocked-cidr=198.19.0.0/24", "--blocked-cidr=198.19.1.0/24", "--capacity-cpu=3",
                 "--build-fetch-allow=198.18.7.0/24"):
        assert want in args, (want, args)
    assert not any(a.startswith("--capacity-memory") for a in args)
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "HOST_IP": "status.hostIP"}
    # the operator never runs as root and can't escalate
    op = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert op["securityContext"]["runAsNonRoot"] is True
    assert op["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert find(docs, "Deployment")["spec"]["replicas"] == 2
    # replicas elect a leader, each under its pod's name
    assert op["containers"][0]["env"] == [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert not any(a.startswith("--leader-elect") for a in op["containers"][0]["args"])
    single = find(render("operator.replicas=1", "operator.leaderElection.enabled=false"), "Deployment")
    assert "--leader-elect=false" in single["spec"]["template"]["spec"]["containers"][0]["args"]


def test_agent_tls_on_by_default_and_off():
    """agent.tls: off, the operator is told plain HTTP is meant; on (the
    default), a CA and a certificate for agent.tls.serverName (made by the
    chart, verifiable with openssl) that the agents serve and whose CA alone
    the operator gets; a Secret of the user's instead: nothing made, that one
    mounted."""
    docs = render("agent.tls.enabled=false")
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("agent-tls")]
    assert "--agent-insecure-http" in container(docs, "Deployment")["args"]
    assert any(a.startswith("--advertise=http://") for a in container(docs, "DaemonSet")["args"])
    assert not [a for a in container(docs, "Deployment")["args"] if a.startswith("--agent-ca")]

    docs = render()  # the default: on
    sec = find(docs, "Secret", "agent-tls")
    assert sec["type"] == "kubernetes.io/tls" and set(sec["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    with tempfile.TemporaryDirectory() as d:
        for k, v in sec["data"].items():
            (Path(d) / k).write_bytes(base64.b64decode(v))
        p = subprocess.run(["openssl", "verify", "-CAfile", f"{d}/ca.crt", f"{d}/tls.crt"], capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        for name, ok in (("sandpit-agent", True), ("other-agent", False)):
            p = subprocess.run(["openssl", "x509", "-in", f"{d}/tls.crt", "-noout", "-checkhost", name],
                               capture_output=True, text=True)
            assert ("does match" in p.stdout and "NOT" not in p.stdout) == ok, p.stdout
    ag = find(docs, "DaemonSet")["spec"]["template"]["spec"]
    args = ag["containers"][0]["args"]
    for want in ("--advertise=https://$(HOST_IP):7443", "--tls-cert=/etc/sandpit/agent-tls/tls.crt",
                 "--tls-key=/etc/sandpit/agent-tls/tls.key"):
        assert want in args, (want, args)
    vol = [v for v in ag["volumes"] if v["name"] == "agent-tls"][0]["secret"]
    assert vol["secretName"] == "t-sandpit-agent-tls" and {i["key"] for i in vol["items"]} == {"tls.crt", "tls.key"}
    assert {"name": "agent-tls", "mountPath": "/etc/sandpit/agent-tls", "readOnly": True} in \
        ag["containers"][0]["volumeMounts"]
    op = find(docs, "Deployment")["spec"]["template"]["spec"]
    oargs = op["containers"][0]["args"]
    assert "--agent-ca=/etc/sandpit/agent-ca/ca.crt" in oargs and "--agent-server-name=sandpit-agent" in oargs
    assert "--agent-insecure-http" not in oargs
    vol = [v for v in op["volumes"] if v["name"] == "agent-ca"][0]["secret"]
    assert vol["secretName"] == "t-sandpit-agent-tls" and vol["items"] == [{"key": "ca.crt", "path": "ca.crt"}], \
        "the operator gets the CA, never the agents' key"

    docs = render("agent.tls.enabled=true", "agent.tls.existingSecret=mine", "agent.tls.serverName=agents.example")
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("agent-tls")]
    for kind in ("DaemonSet", "Deployment"):
        pod = find(docs, kind)["spec"]["template"]["spec"]
        assert [v for v in pod["volumes"] if v["name"].startswith("agent-")
                and v["name"] != "agent-token"][0]["secret"]["secretName"] == "mine"
    assert "--agent-server-name=agents.example" in container(docs, "Deployment")["args"]
    p = helm("template", "t", str(CHART), "--set", "agent.tls.serverName=Not_A_Name", check=False)
    assert p.returncode != 0 and "agent.tls.serverName" in p.stderr, p.stderr


@pytest.mark.parametrize("value, message", [
    ("operator.replicas=0", "operator.replicas: Must be greater than or equal to 1"),
    ("agent.bogus=1", "Additional property bogus is not allowed"),
    ("agent.blockedCIDRs[0]=not-a-cidr", "agent.blockedCIDRs.0: Does not match pattern"),
    ("agent.buildFetchAllow[0]=mirror.local", "agent.buildFetchAllow.0: Does not match pattern"),
    ("agent.stateDir=relative", "agent.stateDir: Does not match pattern"),
    ("operator.logLevel=loud", "operator.logLevel: operator.logLevel must be one of"),
    ("operator.leaderElection.enabled=false", "leader election off needs operator.replicas=1"),
])
def test_bad_values_fail_with_the_key(value, message):
    p = helm("template", "t", str(CHART), "--namespace", NS, "--set", value, check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr


# ------------------------------------------------------- the rendered commands, run


class ChartProcess:
    """Runs a rendered container's command and args in a private mount
    namespace where FAKE_RUN is /run (so the service account files sit at
    /var/run/secrets/kubernetes.io/serviceaccount, as in a pod)."""

    @staticmethod
    def wrap(fake_run, argv):
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount --bind "$0" /run && exec "$@"', str(fake_run), *argv]


def localize(args, values):
    """The rendered args with the pod's environment ($(VAR)) and the token's
    mount path replaced by this test's (the Secret volume itself is checked
    in test_the_token_is_random_and_mounted_by_both)."""
    out = []
    for a in args:
        for k, v in values.items():
            a = a.replace(f"$({k})", v)
        out.append(a)
    return out


class ChartAgent(Agent):
    """conftest's Agent (so the leak check covers it), started with the
    DaemonSet's rendered args."""

    rendered, fake_run, env = None, None, {}

    def argv(self):
        args = localize(self.rendered, {"NODE_NAME": "chart-node", "HOST_IP": "127.0.0.1"})
        args = [a.replace(f"{TOKEN_DIR}/token", str(self.token_file)) for a in args]
        # what only this shared test machine needs: its own socket, cgroup parent and init
        args += ["--socket", str(self.socket), "--cgroup-parent", self.cgroup_parent, "--init",
                 str(REPO / "build" / "bin" / "sandpit-init"), "--log-format", "text"]
        env = [f"{k}={v}" for k, v in self.env.items()]
        return ["env", *env, *ChartProcess.wrap(self.fake_run, [str(REPO / "build" / "bin" / "sandpit-agent"), *args])]


@pytest.fixture
def kube():
    tmp = tempfile.mkdtemp(prefix="sandpit-helm-kubeapi-")
    k = new_kube(tmp)
    yield k
    k.kubectl("delete", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=t",
              "--ignore-not-found", check=False)
    k.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)
    k.stop()
    shutil.rmtree(tmp)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_rendered_commands_run_a_sandbox(kube, templates_dir, tmp_path, tls):
    agent_port, health_port = find_free_port(), find_free_port()
    token_file, token = write_token_file(tmp_path)
    agent = ChartAgent("helm", templates_dir, listen=f"127.0.0.1:{agent_port}", token_file=token_file)
    docs = render(f"agent.tls.enabled={str(tls).lower()}", f"agent.port={agent_port}", f"operator.healthPort={health_port}",
                  f"agent.templatesDir={templates_dir}", f"agent.stateDir={agent.state_dir}",
                  f"agent.imagesDir={agent.state_dir}/images",
                  "agent.leaseDuration=5", "operator.replicas=1", "operator.leaderElection.enabled=true",
                  "operator.resyncSeconds=2", "operator.logFormat=text", "tests.template=host",
                  "tests.timeoutSeconds=60", crds=True)
    # the CRDs and namespace, as `helm install` would create them
    crds = tmp_path / "crds.yaml"
    crds.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] == "CustomResourceDefinition"]))
    kube.kubectl("apply", "-f", str(crds))
    kube.kubectl("create", "namespace", NS)

    # each pod's service account files; on the real control plane (RBAC on)
    # the tokens are the rendered ServiceAccounts' own, bound by the rendered
    # rules, so the run proves the operator, the agent and the helm test Pod
    # can do their job with exactly those rules
    tokens = {"operator": kube.token, "agent": kube.token, "test": kube.token}
    if getattr(kube, "real", False):
        objs = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                                                 "ClusterRoleBinding")]
        rbac = tmp_path / "rbac.yaml"
        rbac.write_text(yaml.safe_dump_all(objs))
        kube.kubectl("apply", "-f", str(rbac))
        for component in tokens:
            st, _, tr = kube.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts/t-sandpit-{component}/token",
                                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                      "spec": {"expirationSeconds": 3600}})
            assert st == 201, tr
            tokens[component] = tr["status"]["token"]
        # and nothing beyond: the operator's own token may not list Secrets nor touch Pods
        for path in (f"/api/v1/namespaces/{NS}/secrets", "/api/v1/namespaces/default/pods"):
            st, _, _ = kube.request("GET", path, token=False,
                                    headers={"Authorization": f"Bearer {tokens['operator']}"})
            assert st == 403, (path, st)
    runs = {}
    for component, tok in tokens.items():
        fr = tmp_path / f"run-{component}"
        sa = fr / "secrets" / "kubernetes.io" / "serviceaccount"
        sa.mkdir(parents=True)
        (sa / "token").write_text(tok)
        shutil.copy(kube.dir / "ca.crt", sa / "ca.crt")
        (sa / "namespace").write_text(NS)
        runs[component] = fr
    pod_env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kube.port)}

    # the agents' TLS Secret as the pods would see it (its keys as files)
    tls_dir = tmp_path / "agent-tls"
    tls_dir.mkdir()
    if tls:
        for k, v in find(docs, "Secret", "agent-tls")["data"].items():
            (tls_dir / k).write_bytes(base64.b64decode(v))

    def files(args):
        return [a.replace(f"{TOKEN_DIR}/token", str(token_file)).replace("/etc/sandpit/agent-tls/", f"{tls_dir}/")
                .replace("/etc/sandpit/agent-ca/", f"{tls_dir}/") for a in args]

    ag = container(docs, "DaemonSet")
    assert ag["command"] == ["sandpit-agent"]
    agent.rendered, agent.fake_run, agent.env = files(ag["args"]), runs["agent"], pod_env
    AGENTS.append(agent)
    op_proc = None
    log = tmp_path / "operator.log"
    try:
        agent.start()

        def lease():
            st, _, obj = kube.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/"
                                             "sandpit-agent-chart-node")
            return obj if st == 200 else None
        lease = wait_for(lease, 20, what="the agent's Lease")
        scheme = "https" if tls else "http"
        assert lease["metadata"]["annotations"]["sandpit.dev/endpoint"] == f"{scheme}://127.0.0.1:{agent_port}"

        op = container(docs, "Deployment")
        assert op["command"] == ["sandpit-operator"]
        args = files(op["args"])
        op_proc = subprocess.Popen(ChartProcess.wrap(runs["operator"], [str(OPERATOR_BIN), *args]),
                                   env={**os.environ, **pod_env},
                                   stdin=subprocess.DEVNULL, stdout=open(log, "w"), stderr=subprocess.STDOUT)

        def ready():
            assert op_proc.poll() is None, "the operator exited:\n" + log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(ready, 30, what="the operator's /readyz (port from the rendered probe)")

        kube.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": "chart"},
            "spec": {"template": "host", "timeout": "5m",
                     "resources": {"cpu": "250m", "memory": "64Mi", "disk": "16Mi", "pids": 64}}}))
        p = kube.kubectl("wait", "--for=condition=Ready", "sandbox/chart", "--timeout=60s", check=False)
        assert p.returncode == 0, p.stderr + "\n" + log.read_text()[-3000:]
        st, _, obj = kube.request("GET", "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxes/chart")
        sid = obj["status"]["sandboxID"]
        if tls:
            # over TLS with the chart's CA, through the CLI (lib's agent client)
            cli = [str(REPO / "build" / "bin" / "sandpit"), "--server", f"https://127.0.0.1:{agent_port}",
                   "--token-file", str(token_file), "--agent-ca", str(tls_dir / "ca.crt")]
            p = subprocess.run([*cli, "exec", sid, "--", "sh", "-c", "echo from-the-chart"], capture_output=True,
                               text=True, timeout=60)
            assert p.returncode == 0 and p.stdout == "from-the-chart\n", p.stderr
            kube.kubectl("delete", "sandbox/chart", "--timeout=60s")
            p = subprocess.run([*cli, "get", sid], capture_output=True, text=True, timeout=60)
            assert p.returncode != 0 and "not found" in (p.stderr + p.stdout).lower(), p.stderr
        else:
            api = Client(tcp=("127.0.0.1", agent_port), token=token)
            r = api.exec(sid, shell="echo from-the-chart")
            assert r.exit_code == 0 and r.stdout == "from-the-chart\n", r
            kube.kubectl("delete", "sandbox/chart", "--timeout=60s")
            assert api.get(f"/v1/sandboxes/{sid}").status == 404
        # the sandbox's mounts lived in the agent's mount namespace: none left
        # there once its teardown (after the fast delete's answer) is done
        wait_for(lambda: sid not in Path(f"/proc/{agent.proc.pid}/mountinfo").read_text(), 30,
                 what="the deleted sandbox's mounts to go")

        # `helm test` with the gateway off (with it on, test_container_images.py
        # runs the E2B SDK Pod): the hook Pod's own script (sh and curl, the
        # pod's service account files and KUBERNETES_SERVICE_*) makes a
        # Sandbox, sees it Ready and deletes it
        hook = find(docs, "Pod", "test")["spec"]["containers"][0]
        hook_env = {e["name"]: e["value"] for e in hook["env"] if "value" in e}
        hook_env["NAME"] = "0f1e2d3c-aaaa-bbbb-cccc-000000000000"  # the pod's uid
        p = subprocess.run(ChartProcess.wrap(runs["test"], [*hook["command"], *hook["args"]]),
                           env={**os.environ, **pod_env, **hook_env}, capture_output=True, text=True,
                           timeout=150)
        assert p.returncode == 0, p.stdout + p.stderr + "\n" + log.read_text()[-3000:]
        assert "sandbox helm-test-0f1e2d3c Ready" in p.stdout and "sandbox helm-test-0f1e2d3c deleted" in p.stdout
        st, _, _ = kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{NS}/sandboxes/helm-test-0f1e2d3c")
        assert st == 404
    finally:
        if op_proc is not None:
            op_proc.terminate()
            try:
                op_proc.wait(20)
            except subprocess.TimeoutExpired:
                op_proc.kill()
                op_proc.wait()
        stop_agent(agent)
    assert op_proc.returncode == 0, log.read_text()[-3000:]
    assert token not in log.read_text(), "the agent token was logged"


@pytest.mark.real_only("Deployments, DaemonSets and lookup need the real API server")
def test_agent_tls_secret_kept_across_upgrade(kube):
    """`helm install` with agent.tls on makes the CA and the agents'
    certificate; `helm upgrade` keeps them (lookup), so running agents and
    operators keep trusting each other; `helm uninstall` removes them."""
    ns = "sandpit-helm-tls"
    base = ["--kubeconfig", kube.kubeconfig, "--namespace", ns]
    sets = ["--set", "agent.tls.enabled=true"]

    def secret():
        p = kube.kubectl("get", "-n", ns, "secret", "sp-sandpit-agent-tls", "-o", "json", check=False)
        return json.loads(p.stdout) if p.returncode == 0 else None
    try:
        helm("install", "sp", str(CHART), *base, "--create-namespace", *sets)
        first = secret()
        assert first and first["type"] == "kubernetes.io/tls", first
        assert set(first["data"]) == {"tls.crt", "tls.key", "ca.crt"}
        helm("upgrade", "sp", str(CHART), *base, *sets, "--set", "agent.runtime=crun")
        assert secret()["data"] == first["data"], "the upgrade made a new CA or certificate"
        ds = json.loads(kube.kubectl("get", "-n", ns, "daemonset", "sp-sandpit-agent", "-o", "json").stdout)
        pod = ds["spec"]["template"]["spec"]
        assert "--runtime=crun" in pod["containers"][0]["args"]
        assert [v for v in pod["volumes"] if v["name"] == "agent-tls"][0]["secret"]["secretName"] == \
            "sp-sandpit-agent-tls"
        dep = json.loads(kube.kubectl("get", "-n", ns, "deployment", "sp-sandpit-operator", "-o", "json").stdout)
        assert "--agent-ca=/etc/sandpit/agent-ca/ca.crt" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
        helm("uninstall", "sp", *base, "--wait", "--timeout", "60s")
        assert secret() is None
    finally:
        helm("uninstall", "sp", *base, check=False)
        kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        kube.kubectl("delete", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=sp",
                     "--ignore-not-found", check=False)
