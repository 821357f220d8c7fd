"""Least-privilege RBAC, proven from the C source: every Kubernetes API call
the operator (operator/src, its gateway in gateway/src) and the node agent
(node-agent/src) make, through lib/src's client, is found in the source (the
K8sResource descriptors, the k8s_get/create/update/patch/delete/list calls,
informers, k8s_request paths, and lib/src wrappers such as k8s_event_post),
and the chart's ClusterRoles and Roles bound to each component's
ServiceAccount must grant exactly those (group, resource, verb), in the right
scope (the release namespace for calls in the component's own --namespace,
every namespace otherwise), and nothing beyond. On the real control plane
(`make test-k8s`, RBAC authorization) the installed rules are asked with
SubjectAccessReviews: each derived permission allowed, every other verb on
the same resources refused."""

import re

import pytest
import yaml

from conftest import REPO
from test_helm import CHART, helm

NS = "sandpit-rbac"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
CALL_VERB = {"get": "get", "create": "create", "update": "update", "update_status": "update",
             "patch": "patch", "delete": "delete", "list": "list", "list_page": "list"}
# what each source decides, per component; a file with API calls that is not
# listed here fails the test (teach it where the file runs)
FEATURES = {
    "operator/src/": ("operator", None),
    "gateway/src/backend-cluster.c": ("operator", "gateway"),
    "gateway/src/auth.c": ("operator", "keys"),  # the agent's gateway is never enabled by the chart
    "node-agent/src/": ("agent", None),
}
# namespace arguments that are the component's own --namespace
OWN_NS = re.compile(r"(cfg\.namespace|cl->namespace|o->namespace|secret_ns)\b")


def split_args(text, start):
    """The arguments of the call whose '(' is at text[start]: strings, braces
    and nested calls respected."""
    args, depth, cur, i = [], 0, "", start + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            cur += text[i:j + 1]
            i = j + 1
            continue
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            if depth == 0:
                args.append(cur.strip())
                return args
            depth -= 1
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    raise AssertionError("unbalanced call")


def sources():
    for d in ("operator/src", "gateway/src", "node-agent/src", "lib/src"):
        for p in sorted((REPO / d).glob("*.c")):
            yield f"{d}/{p.name}", re.sub(r"/\*.*?\*/|//[^\n]*", "", p.read_text(), flags=re.S)


DESC = re.compile(r'K8sResource\s+(\w+)\s*=\s*\{\s*"([^"]*)",\s*"[^"]*",\s*"([^"]*)"')
INLINE = re.compile(r'\{\s*"([^"]*)",\s*"[^"]*",\s*"([^"]*)",\s*(?:true|false)\s*\}')
CALL = re.compile(r"\bk8s_(get|create|update|update_status|patch|delete|list|list_page)\s*\(")
WATCH = re.compile(r"K8sWatchOptions\s+\w+\s*=\s*\{")
REQUEST = re.compile(r'\bk8s_request\s*\(\s*[^,]+,\s*"(\w+)",\s*"/apis?/([^"]+)"')
FUNC = re.compile(r"^[a-zA-Z][\w \*]*?\b(\w+)\s*\([^;{]*\)\s*\{", re.M)


def derive():
    """{(component, feature): {(scope, group, resource, verb)}} from the source,
    plus the lib wrappers found."""
    files = dict(sources())
    descs = {}
    for text in files.values():
        for name, group, res in DESC.findall(text):
            descs[name] = (group, res)

    def resource_of(expr):
        expr = expr.lstrip("&").strip()
        m = INLINE.fullmatch(expr)
        if m:
            return m.group(1), m.group(2)
        return descs.get(expr)

    def calls(text):
        """[(function, scope, group, resource, verb)] of one file."""
        out = []
        funcs = [(m.start(), m.group(1)) for m in FUNC.finditer(text)]

        def func_at(pos):
            name = None
            for s, n in funcs:
                if s > pos:
                    break
                name = n
            return name
        for m in CALL.finditer(text):
            args = split_args(text, m.end() - 1)
            res = resource_of(args[1])
            if res is None:
                continue  # generic (lib's own plumbing: the watch's list, through informers below)
            verb, sub = CALL_VERB[m.group(1)], ""
            if m.group(1) == "update_status" or (m.group(1) == "patch" and args[4] == '"status"'):
                sub = "/status"
            if m.group(1) in ("update", "update_status"):
                scope = None  # the object's namespace: where this file reads the resource (below)
            else:
                scope = "own" if OWN_NS.search(args[2]) else "any"
            out.append((func_at(m.start()), scope, res[0], res[1] + sub, verb))
        # an update writes back an object read in this file: its scope is the file's for that resource
        for i, (fn, scope, g, r, v) in enumerate(out):
            if scope is None:
                scopes = {s for _, s, g2, r2, _ in out if s and (g2, r2.split("/")[0]) == (g, r.split("/")[0])}
                assert len(scopes) == 1, f"update of {g}/{r}: no single scope among {scopes}"
                out[i] = (fn, scopes.pop(), g, r, v)
        for m in WATCH.finditer(text):
            body = split_args(text, m.end() - 1)
            fields = dict(a.split("=", 1) for a in body if "=" in a)
            fields = {k.strip().lstrip("."): v.strip() for k, v in fields.items()}
            res = resource_of(fields["resource"])
            assert res, fields
            scope = "own" if OWN_NS.search(fields.get("namespace", "")) else "any"
            for verb in ("list", "watch"):
                out.append((func_at(m.start()), scope, res[0], res[1], verb))
        for m in REQUEST.finditer(text):
            method, path = m.groups()
            parts = path.split("/")
            group, res = ("", parts[1]) if path.startswith("v1/") else (parts[0], parts[2])
            verb = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
            out.append((func_at(m.start()), "any", group, res, verb))
        return out

    wrappers = {}
    for path, text in files.items():
        if path.startswith("lib/src/"):
            for fn, *perm in calls(text):
                wrappers.setdefault(fn, set()).add(tuple(perm))
    need = {}
    for path, text in files.items():
        if path.startswith("lib/src/"):
            continue
        perms = {tuple(p) for _, *p in calls(text)}
        for fn, wperms in wrappers.items():
            if re.search(rf"\b{fn}\s*\(", text):
                perms |= wperms
        if not perms:
            continue
        key = next((v for k, v in FEATURES.items() if path.startswith(k)), None)
        assert key, f"{path} calls the API server ({sorted(perms)}): say in FEATURES where it runs"
        need.setdefault(key, set()).update(perms)
    return need, wrappers


def wanted(need, gateway, auth):
    want = {"operator": set(), "agent": set()}
    for (component, feature), perms in need.items():
        if feature is None or (feature == "gateway" and gateway) or (feature == "keys" and gateway and auth == "keys"):
            want[component] |= perms
    return want


def render(*sets):
    args = ["template", "t", str(CHART), "--namespace", NS]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def granted(docs):
    """{component: {(scope, group, resource, verb)}} from the rendered
    (Cluster)Roles through their bindings (the helm test hook's own account
    aside); resourceNames kept aside as {(component, group, resource, verb): names}."""
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("Role", "ClusterRole")
             and "helm.sh/hook" not in d["metadata"].get("annotations", {})}
    out, names = {"operator": set(), "agent": set()}, {}
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding") or "helm.sh/hook" in b["metadata"].get("annotations", {}):
            continue
        role = roles[(b["roleRef"]["kind"], b["roleRef"]["name"])]
        scope = "any" if role["kind"] == "ClusterRole" else "own"
        if scope == "own":
            assert role["metadata"]["namespace"] == NS == b["metadata"]["namespace"]
        for s in b["subjects"]:
            assert s["kind"] == "ServiceAccount" and s["namespace"] == NS, s
            component = s["name"].removeprefix("t-sandpit-")
            for r in role["rules"]:
                assert "*" not in r["verbs"] + r["resources"] + r["apiGroups"], r
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        for v in r["verbs"]:
                            out[component].add((scope, g, res, v))
                            if r.get("resourceNames"):
                                names[(component, g, res, v)] = r["resourceNames"]
    return out, names


def test_the_source_is_understood():
    need, wrappers = derive()
    # the extraction found the calls it must (if these fail, the patterns above no longer see the code)
    assert ("any", "events.k8s.io", "events", "create") in wrappers["k8s_event_post"]
    op = need[("operator", None)]
    assert ("any", "sandpit.dev", "sandboxes/status", "patch") in op
    assert ("own", "coordination.k8s.io", "leases", "watch") in op
    assert ("own", "", "secrets", "watch") in need[("operator", "keys")]
    assert ("any", "authentication.k8s.io", "tokenreviews", "create") in need[("operator", "keys")]
    assert ("own", "coordination.k8s.io", "leases", "delete") in need[("agent", None)]


@pytest.mark.parametrize("gateway, auth", [(False, "keys"), (True, "keys"), (True, "none")])
def test_rules_are_exactly_what_the_code_calls(gateway, auth):
    need, _ = derive()
    want = wanted(need, gateway, auth)
    docs = render(f"operator.gateway.enabled={str(gateway).lower()}", f"operator.gateway.auth={auth}")
    got, names = granted(docs)
    for component in ("operator", "agent"):
        # a namespaced grant in every namespace also covers the release namespace
        covered = {p for p in want[component] if ("any",) + p[1:] in got[component] or p in got[component]}
        assert covered == want[component], (component, sorted(want[component] - covered))
        beyond = {p for p in got[component] if p not in want[component]}
        assert not beyond, (component, "granted but never called", sorted(beyond))
    # the API keys' informer watches one Secret: the rule names it
    if gateway and auth == "keys":
        for v in ("list", "watch"):
            assert names[("operator", "", "secrets", v)] == ["sandpit-api-keys"]
    # the agent's gateway is not rendered, so it needs no authentication rules
    ds = [d for d in docs if d["kind"] == "DaemonSet"][0]
    assert not [a for a in ds["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--gateway")]


# ------------------------------------------------- on the real control plane

@pytest.fixture
def kube(tmp_path):
    from cluster import new_kube
    k = new_kube(str(tmp_path))
    yield k
    k.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)
    k.kubectl("delete", "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=t",
              "--ignore-not-found", check=False)
    k.stop()


@pytest.mark.real_only("RBAC authorization (the fixture API server authorises every token)")
def test_installed_rules_allow_that_and_refuse_the_rest(kube, tmp_path):
    need, _ = derive()
    want = wanted(need, True, "keys")
    docs = render("operator.gateway.enabled=true", "operator.gateway.auth=keys")
    rbac = [d for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
            and "helm.sh/hook" not in d["metadata"].get("annotations", {})]
    kube.kubectl("create", "namespace", NS)
    f = tmp_path / "rbac.yaml"
    f.write_text(yaml.safe_dump_all(rbac))
    kube.kubectl("apply", "-f", str(f))

    def allowed(component, scope, group, resource, verb, name=None):
        res, _, sub = resource.partition("/")
        attrs = {"group": group, "resource": res, "verb": verb}
        if sub:
            attrs["subresource"] = sub
        if scope != "cluster":
            attrs["namespace"] = NS if scope == "own" else "team-elsewhere"
        if name:
            attrs["name"] = name
        sa = f"system:serviceaccount:{NS}:t-sandpit-{component}"
        st, _, obj = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": sa, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}",
                                            "system:authenticated"], "resourceAttributes": attrs}})
        assert st == 201, obj
        return obj["status"].get("allowed", False)

    cluster_scoped = {"tokenreviews", "subjectaccessreviews"}
    for component in ("operator", "agent"):
        resources = {(g, r) for _, g, r, _ in want["operator"] | want["agent"]}
        for group, resource in sorted(resources):
            for verb in VERBS:
                for scope in ("own", "any"):
                    if resource in cluster_scoped:
                        scope = "cluster"
                    # a grant in every namespace covers the release namespace too
                    should = ("any", group, resource, verb) in want[component] or \
                        (scope == "own" and ("own", group, resource, verb) in want[component])
                    name = None
                    if (group, resource) == ("", "secrets") and verb in ("list", "watch") and should:
                        # the API keys' informer: only the one Secret
                        name = "sandpit-api-keys"
                        assert not allowed(component, scope, group, resource, verb), \
                            f"{component} may {verb} every Secret of {NS}"
                    got = allowed(component, scope, group, resource, verb, name)
                    assert got == should, (component, scope, group, resource, verb, "allowed" if got else "refused")
