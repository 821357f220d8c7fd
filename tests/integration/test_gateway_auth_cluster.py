"""The gateway's authentication in cluster mode (docs/auth.md), with two
agents serving the gateway as two replicas would: API keys in the Secret
sandpit-api-keys of sandpit-system, written by `sandpit keys --kubeconfig`,
taken by both and revoked on both within seconds; Kubernetes tokens checked
with TokenReview and authorised with SubjectAccessReview per verb and
namespace (a ServiceAccount without a grant refused, one granted create in A
able to create there and not in B). On the fixture API server tokens and
grants are registered through its /_admin switches; on the real control plane
(make test-k8s) they are a ServiceAccount's token and a Role and RoleBinding."""

import json
import re
import subprocess

import pytest

from conftest import REPO, Client, stop_agent, wait_for
from test_agent_cluster import Kube, start_cluster_agent, token_file  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

NS = "sandpit-system"
CLI = REPO / "build" / "bin" / "sandpit"


@pytest.fixture(scope="module")
def kube():
    k = Kube()
    try:
        for ns in (NS, "team-a", "team-b"):
            k.kubectl("create", "namespace", ns)
        yield k
    finally:
        k.stop()


def gateway_port(a):
    found = wait_for(lambda: re.findall(r"gateway \(E2B API\) on \S+, tcp port (\d+)", a.log_tail(lines=100000)),
                     10, what="the gateway's port in the log")
    return int(found[-1])


@pytest.fixture(scope="module")
def replicas(templates_dir, kube, token_file):  # noqa: F811
    agents = []
    try:
        for i in (1, 2):
            a = start_cluster_agent(templates_dir, kube, token_file, f"gw-{i}",
                                    extra=["--gateway-listen", "127.0.0.1:0"])
            a.gateway = Client(tcp=("127.0.0.1", gateway_port(a)))
            agents.append(a)
        yield agents
    finally:
        for a in agents:
            stop_agent(a)


def keys(kube, *args):
    return subprocess.run([str(CLI), "keys", "--kubeconfig", kube.kubeconfig, *args], capture_output=True,
                          text=True, timeout=60)


def status(a, key):
    """The status of a list through replica a's gateway with API key."""
    return a.gateway.get("/v2/sandboxes", headers={"X-API-KEY": key}).status


def test_keys_in_the_secret_work_and_are_revoked_on_every_replica(kube, replicas):
    r = keys(kube, "create", "--namespace", "team-a", "--name", "ci")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert re.fullmatch(r"e2b_[0-9a-f]{40}", key)
    secret = json.loads(kube.kubectl("get", "secret", "-n", NS, "sandpit-api-keys", "-o", "json").stdout)
    assert key not in json.dumps(secret)  # only the hash is stored
    listed = json.loads(keys(kube, "list", "--json").stdout)
    assert [(k["name"], k["namespace"]) for k in listed] == [("ci", "team-a")]
    for a in replicas:
        wait_for(lambda: status(a, key) == 200, 10, what=f"the key on {a.name}")
    r = keys(kube, "revoke", "ci")
    assert r.returncode == 0, r.stderr
    for a in replicas:
        wait_for(lambda: status(a, key) == 401, 10, what=f"the revocation on {a.name}")
        assert key not in a.log_tail(lines=100000)
    assert json.loads(keys(kube, "list", "--json").stdout) == []
    r = keys(kube, "revoke", "ci")
    assert r.returncode == 1 and r.stderr.strip() == "sandpit: keys: no key ci"


def test_concurrent_creates_of_one_name(kube):
    """`sandpit keys create --name N` run several times at once: one makes
    the key, every other is told the name is taken, and the Secret holds one
    key of that name; whether the Secret existed before (an update that must
    not overwrite another's) or not (two creates of the Secret)."""
    ns = "keys-race"
    kube.kubectl("create", "namespace", ns)
    for rnd, name in enumerate(("first", "second", "third")):
        procs = [subprocess.Popen([str(CLI), "keys", "--kubeconfig", kube.kubeconfig, "--secret-namespace", ns,
                                   "create", "--namespace", "team-a", "--name", name],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        results = [(p.wait(60), *p.communicate()) for p in procs]
        made = [out for rc, out, _ in results if rc == 0]
        refused = [err.strip() for rc, _, err in results if rc != 0]
        assert len(made) == 1, (rnd, results)
        assert refused == [f"sandpit: keys: a key named {name} exists already"] * 5, (rnd, results)
        listed = json.loads(keys(kube, "--secret-namespace", ns, "list", "--json").stdout)
        assert [k["name"] for k in listed].count(name) == 1, listed
    assert sorted(k["name"] for k in listed) == ["first", "second", "third"]


def sa_token(kube, ns, name, verbs):
    """A bearer token of ServiceAccount ns/name, granted verbs on sandboxes in ns."""
    user = f"system:serviceaccount:{ns}:{name}"
    if not getattr(kube.k, "real", False):
        token = f"tok-{ns}-{name}"
        kube.k.ok("POST", "/_admin/tokens", {"token": token, "username": user, "uid": f"uid-{name}",
                                             "groups": ["system:serviceaccounts", "system:authenticated"]})
        if verbs:
            kube.k.ok("POST", "/_admin/grants", {"user": user, "namespace": ns, "verbs": verbs})
        return token
    kube.kubectl("create", "serviceaccount", "-n", ns, name)
    if verbs:
        # a manifest: `kubectl create role` wants the CRD installed, RBAC does not
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": f"{name}-sandboxes", "namespace": ns},
                "rules": [{"apiGroups": ["sandpit.dev"], "resources": ["sandboxes"], "verbs": verbs}]}
        kube.kubectl("create", "-f", "-", stdin=json.dumps(role))
        kube.kubectl("create", "rolebinding", "-n", ns, f"{name}-sandboxes", f"--role={name}-sandboxes",
                     f"--serviceaccount={ns}:{name}")
    return kube.kubectl("create", "token", "-n", ns, name).stdout.strip()


def bearer(token, ns=None):
    h = {"Authorization": f"Bearer {token}"}
    if ns:
        h["X-Sandpit-Namespace"] = ns
    return h


def test_kubernetes_tokens_with_rbac(kube, replicas):
    a = replicas[0]
    before = a.client.get("/v1/sandboxes").json()
    nobody = sa_token(kube, "team-a", "nobody", [])
    r = a.gateway.get("/v2/sandboxes", headers=bearer(nobody))
    assert r.status == 403, r
    assert r.json()["code"] == 403
    assert "system:serviceaccount:team-a:nobody may not list" in r.json()["message"]
    r = a.gateway.post("/v2/sandboxes", {"templateID": "base"}, headers=bearer(nobody))
    assert r.status == 403

    runner = sa_token(kube, "team-a", "runner", ["create", "list", "get"])
    # a real API server's RBAC sees a new Role within moments (a denial is
    # kept for the cache's 10 s, hence the wait)
    r = wait_for(lambda: (lambda r: r if r.status == 200 else None)(a.gateway.get("/v2/sandboxes",
                                                                                  headers=bearer(runner))),
                 30, interval=0.5, what="the runner's grant")
    assert r.json() == [], r
    # not in team-b: refused, nothing made
    r = a.gateway.post("/v2/sandboxes", {"templateID": "base", "timeout": 60}, headers=bearer(runner, "team-b"))
    assert r.status == 403, r
    assert a.client.get("/v1/sandboxes").json() == before
    # in team-a: made, labelled with the namespace
    r = a.gateway.post("/v2/sandboxes", {"templateID": "base", "timeout": 60}, headers=bearer(runner))
    assert r.status == 201, r
    sid = r.json()["sandboxID"]
    a.client.created.append(sid)
    assert a.client.get(f"/v1/sandboxes/{sid}").json()["labels"]["sandpit.dev/namespace"] == "team-a"
    assert a.gateway.get(f"/sandboxes/{sid}", headers=bearer(runner)).status == 200
    # no delete granted
    r = a.gateway.delete(f"/sandboxes/{sid}", headers=bearer(runner))
    assert r.status == 403
    assert a.client.get(f"/v1/sandboxes/{sid}").status == 200
    # a token the API server does not know
    r = a.gateway.get("/v2/sandboxes", headers=bearer("not-a-token-" + "x" * 20))
    assert r.status == 401 and r.json()["code"] == 401
    log = a.log_tail(lines=100000)
    assert runner not in log and nobody not in log


@pytest.mark.fixture_only
def test_answers_are_cached(kube, replicas):
    a = replicas[1]
    token = sa_token(kube, "team-b", "cached", ["list"])

    def counts():
        reqs = kube.k.ok("GET", "/_admin/stats")["requests"]
        return reqs.get("tokenreview", 0), reqs.get("subjectaccessreview", 0)

    t0, s0 = counts()
    for _ in range(3):
        assert a.gateway.get("/v2/sandboxes", headers=bearer(token)).status == 200
    t1, s1 = counts()
    # one of each for three requests (within the 10 s the answers are kept)
    assert (t1 - t0, s1 - s0) == (1, 1)
