"""The chart's optional parts (charts/sandpit): the gateway's Ingress, TLS and
E2B_DOMAIN values, the API-keys Secret, the operator's PodDisruptionBudget,
NetworkPolicies, the ServiceMonitor (only where monitoring.coreos.com/v1
exists), the agent's runtime and warm pools, SandboxTemplates, node selection;
and that every value in values.schema.json has a description."""

import base64
import json

import pytest

from test_helm import CHART, NS, container, find, helm, render

CHART_VERSION = (CHART / "Chart.yaml").read_text().split("appVersion:", 1)[1].split()[0].strip('"')


def render_a(*sets, api=None):
    import yaml
    args = ["template", "t", str(CHART), "--namespace", NS]
    for s in sets:
        args += ["--set-json" if s.startswith("json:") else "--set", s.removeprefix("json:")]
    if api:
        args += ["--api-versions", api]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def kinds(docs):
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


def test_every_value_is_described():
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = []

    def walk(node, path):
        if path and not node.get("description"):
            missing.append(path)
        for k, v in node.get("properties", {}).items():
            walk(v, f"{path}.{k}" if path else k)
        items = node.get("items")
        if isinstance(items, dict) and "properties" in items:
            for k, v in items["properties"].items():
                walk(v, f"{path}[].{k}")
    walk(schema, "")
    assert not missing, missing


def test_ingress_wildcard_host_and_tls():
    docs = render_a("operator.gateway.enabled=true", "operator.gateway.domain=sbx.example.test",
                    "ingress.enabled=true", "ingress.host=api.sbx.example.test", "ingress.tlsSecret=sbx-tls",
                    "ingress.className=nginx")
    ing = find(docs, "Ingress", "gateway")
    hosts = [r["host"] for r in ing["spec"]["rules"]]
    assert hosts == ["api.sbx.example.test", "*.sbx.example.test"]
    assert ing["spec"]["tls"] == [{"secretName": "sbx-tls", "hosts": hosts}]
    assert ing["spec"]["ingressClassName"] == "nginx"
    for r in ing["spec"]["rules"]:
        be = r["http"]["paths"][0]["backend"]["service"]
        assert be == {"name": "t-sandpit-gateway", "port": {"name": "gateway"}}
    assert "--gateway-domain=sbx.example.test" in container(docs, "Deployment")["args"]
    # off by default; refused without the gateway or a host
    assert not [d for d in render() if d["kind"] == "Ingress"]
    p = helm("template", "t", str(CHART), "--set", "ingress.enabled=true", "--set", "ingress.host=a.b", check=False)
    assert p.returncode != 0 and "needs operator.gateway.enabled" in p.stderr, p.stderr
    p = helm("template", "t", str(CHART), "--set", "ingress.enabled=true", "--set",
             "operator.gateway.enabled=true", check=False)
    assert p.returncode != 0 and "needs ingress.host" in p.stderr, p.stderr


def test_gateway_tls_from_a_secret():
    docs = render_a("operator.gateway.enabled=true", "operator.gateway.tlsSecret=gw-tls")
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--gateway-tls-cert=/etc/sandpit/gateway-tls/tls.crt" in args
    assert "--gateway-tls-key=/etc/sandpit/gateway-tls/tls.key" in args
    vol = [v for v in pod["volumes"] if v["name"] == "gateway-tls"][0]
    assert vol["secret"]["secretName"] == "gw-tls"
    assert {"name": "gateway-tls", "mountPath": "/etc/sandpit/gateway-tls", "readOnly": True} \
        in pod["containers"][0]["volumeMounts"]
    plain = container(render_a("operator.gateway.enabled=true"), "Deployment")["args"]
    assert not [a for a in plain if a.startswith("--gateway-tls")]


def test_api_keys_secret_only_when_asked_with_hashes():
    assert not [d for d in render("operator.gateway.enabled=true") if d["kind"] == "Secret"
                and d["metadata"]["name"] == "sandpit-api-keys"]
    rec = {"id": "abcdefabcdef", "name": "ci", "namespace": "team-a", "sha256": "0" * 64,
           "created": "2026-01-01T00:00:00Z"}
    docs = render_a("apiKeys.create=true", "json:apiKeys.records=" + json.dumps([rec]))
    sec = find(docs, "Secret", "sandpit-api-keys")
    assert sec["metadata"]["namespace"] == NS
    assert sec["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert json.loads(base64.b64decode(sec["data"]["abcdefabcdef"])) == rec
    # a key itself has no place: records are hashes
    p = helm("template", "t", str(CHART), "--set", "apiKeys.create=true", "--set-json",
             'apiKeys.records=[{"id":"abcdefabcdef","name":"ci","namespace":"a","key":"sk_x",'
             '"sha256":"00","created":"x"}]', check=False)
    assert p.returncode != 0 and "key" in p.stderr, p.stderr


def test_pdb_only_with_more_than_one_replica():
    pdb = find(render(), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = find(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    one = render("operator.replicas=1")
    assert not [d for d in one if d["kind"] == "PodDisruptionBudget"]
    p = helm("template", "t", str(CHART), "--set", "operator.pdb.minAvailable=2", check=False)
    assert p.returncode != 0 and "minAvailable must be below" in p.stderr, p.stderr


def test_network_policies():
    assert not [d for d in render() if d["kind"] == "NetworkPolicy"]
    p = helm("template", "t", str(CHART), "--set", "networkPolicy.enabled=true", check=False)
    assert p.returncode != 0 and "apiServerCIDRs" in p.stderr, p.stderr
    docs = render_a("networkPolicy.enabled=true", "networkPolicy.apiServerCIDRs[0]=198.18.0.1/32",
                    "networkPolicy.nodeCIDRs[0]=198.18.1.0/24", "operator.gateway.enabled=true",
                    'json:networkPolicy.gatewayFrom=[{"namespaceSelector":{"matchLabels":{"team":"a"}}}]')
    op = find(docs, "NetworkPolicy", "operator")["spec"]
    assert op["policyTypes"] == ["Ingress", "Egress"]
    ports = [r["ports"][0]["port"] for r in op["ingress"]]
    assert ports == [8081, 3000]
    assert op["ingress"][1]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]
    assert {"ipBlock": {"cidr": "198.18.0.1/32"}} in op["egress"][1]["to"]
    assert op["egress"][2] == {"to": [{"ipBlock": {"cidr": "198.18.1.0/24"}}],
                               "ports": [{"port": 7443, "protocol": "TCP"}]}
    ag = find(docs, "NetworkPolicy", "agent")["spec"]
    assert ag["ingress"][0]["ports"] == [{"port": 7443, "protocol": "TCP"}]
    sel = ag["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert sel["app.kubernetes.io/component"] == "operator"


def test_service_monitor_only_with_the_api():
    assert not [d for d in render() if d["kind"] == "ServiceMonitor"]
    docs = render_a(api="monitoring.coreos.com/v1")
    sm = find(docs, "ServiceMonitor")
    svc = find(docs, "Service", "operator-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"] == [{"port": "health", "path": "/metrics", "interval": "30s"}]
    assert svc["spec"]["ports"][0]["port"] == 8081
    off = render_a("metrics.serviceMonitor.enabled=false", api="monitoring.coreos.com/v1")
    assert not [d for d in off if d["kind"] == "ServiceMonitor"]


def test_images_one_for_both_or_one_each():
    docs = render_a("image.repository=reg.test/sandpit")
    assert container(docs, "DaemonSet")["image"] == "reg.test/sandpit:" + CHART_VERSION
    assert container(docs, "Deployment")["image"] == "reg.test/sandpit:" + CHART_VERSION
    docs = render_a("image.repository=reg.test/sandpit-agent", "image.tag=1.2.3",
                    "operator.image.repository=reg.test/sandpit-operator")
    assert container(docs, "DaemonSet")["image"] == "reg.test/sandpit-agent:1.2.3"
    assert container(docs, "Deployment")["image"] == "reg.test/sandpit-operator:1.2.3"
    docs = render_a("operator.image.repository=reg.test/sandpit-operator", "operator.image.tag=9.9.9")
    assert container(docs, "Deployment")["image"] == "reg.test/sandpit-operator:9.9.9"
    assert container(docs, "DaemonSet")["image"] == "sandpit:" + CHART_VERSION


def test_runtime_pools_templates_and_placement():
    docs = render_a("agent.runtime=crun", "agent.dns=198.18.0.53", "agent.defaultRegistry=registry.example.test:5000",
                    'json:agent.pools=[{"template":"default","size":4},'
                    '{"template":"host","size":8,"name":"small","cpu":"250m","memory":"256Mi"}]',
                    'json:templates=[{"name":"python","spec":{"source":{"image":"python:3.12-slim"}}}]',
                    'json:agent.nodeSelector={"sandpit.dev/sandboxes":"true"}',
                    'json:agent.tolerations=[{"key":"sandboxes","operator":"Exists","effect":"NoSchedule"}]',
                    'json:agent.affinity={"nodeAffinity":{}}', 'json:operator.nodeSelector={"role":"infra"}')
    args = container(docs, "DaemonSet")["args"]
    for a in ("--runtime=crun", "--dns=198.18.0.53", "--pool=default=4", "--images-dir=/var/lib/sandpit/images",
              "--default-registry=registry.example.test:5000",
              "--pool=host:cpu=250m,memory=256Mi,name=small=8"):
        assert a in args, (a, args)
    ag = find(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert ag["nodeSelector"] == {"sandpit.dev/sandboxes": "true"}
    assert ag["tolerations"][0]["key"] == "sandboxes" and ag["affinity"] == {"nodeAffinity": {}}
    assert find(docs, "Deployment")["spec"]["template"]["spec"]["nodeSelector"] == {"role": "infra"}
    t = find(docs, "SandboxTemplate", "python")
    assert t["metadata"]["namespace"] == NS and t["spec"] == {"source": {"image": "python:3.12-slim"}}
    assert "--runtime=runc" in container(render(), "DaemonSet")["args"]
    assert not [a for a in container(render(), "DaemonSet")["args"] if a.startswith("--default-registry")]
    vols = {v["name"]: v for v in ag["volumes"]}
    assert vols["images"]["hostPath"] == {"path": "/var/lib/sandpit/images", "type": "DirectoryOrCreate"}


@pytest.mark.parametrize("value, message", [
    ("agent.runtime=kata", "agent.runtime: agent.runtime must be one of"),
    ("operator.gateway.domain=Bad_Domain", "operator.gateway.domain: Does not match pattern"),
    ("operator.gateway.service.sessionAffinity=Sticky", "sessionAffinity must be one of"),
])
def test_bad_new_values_fail_with_the_key(value, message):
    p = helm("template", "t", str(CHART), "--namespace", NS, "--set", value, check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_the_install_docs_values_table_is_current(tmp_path):
    import shutil as sh
    import subprocess
    import sys
    script = CHART / "values-table.py"
    doc = CHART.parents[1] / "docs" / "install.md"
    p = subprocess.run([sys.executable, str(script), "--check", str(doc)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # and the check can fail: a table missing a row is caught
    copy = tmp_path / "install.md"
    sh.copy(doc, copy)
    text = copy.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `agent.runtime`"))
    copy.write_text(text.replace(row + "\n", ""))
    p = subprocess.run([sys.executable, str(script), "--check", str(copy)], capture_output=True, text=True)
    assert p.returncode == 1 and "values table differs" in p.stderr, p.stderr
    # every value of the schema has its row
    schema = json.loads((CHART / "values.schema.json").read_text())
    for key in schema["properties"]:
        if key != "global":
            assert f"| `{key}" in text, key
