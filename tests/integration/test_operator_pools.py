"""Warm pools of SandboxTemplates through the operator (docs/operator.md#warm-pools):
a template's spec.warmPool becomes a pool on the node's agent with the shape a
Sandbox of the template is created with; the template's status.warmPool says
ready/total and `kubectl get sbxt` prints it; a Sandbox of the template is
claimed from the pool (the agent's pool counts the claim) and is Ready; the
pool refills; removing warmPool, or the template, removes the pool and leaves
nothing on the node. An invalid warmPool is refused by the CRD's schema.
Fixtures from
test_operator.py (one agent, node-a, --resync-seconds 2)."""

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import Client, start_tcp_agent, stop_agent, wait_for
from oci_images import Image, Registry, busybox_base, make_layer
from test_operator import (Operator, condition, delete_and_prove_gone, get_sbx, kube, lease,  # noqa: F401
                           operator, operator_alive, run, wait_ready)


@pytest.fixture(scope="module")
def registry():
    if not shutil.which("docker-registry") or not Path("/usr/bin/busybox").exists():
        pytest.skip("docker-registry and busybox-static are needed (mk/deps.sh)")
    d = Path(tempfile.mkdtemp(prefix="sandpit-it-oppools-reg-"))
    reg = Registry(d / "reg")
    yield reg
    reg.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def node(templates_dir, tmp_path_factory, registry):
    """test_operator's node, told the test registry speaks plain HTTP."""
    a = start_tcp_agent("op", templates_dir, tmp_path_factory, extra_args=["--insecure-registry", registry.host])
    a.api = Client(tcp=("127.0.0.1", a.port), token=a.token)
    yield a
    stop_agent(a)

TEMPLATES = "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxtemplates"
RESOURCES = {"cpu": "250m", "memory": "96Mi", "disk": "32Mi", "pids": 100}


def apply(kube, obj):
    kube.kubectl("apply", "-f", "-", input=json.dumps(obj))


def template(name, templates_dir, warm_pool, **spec):
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": name},
            "spec": {"source": {"path": f"{templates_dir}/host"}, "resources": RESOURCES,
                     "languages": ["bash"], **({"warmPool": warm_pool} if warm_pool else {}), **spec}}


def sandbox(name, tmpl, resources=None):
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
            "spec": {"template": tmpl, "timeout": "10m", **({"resources": resources} if resources else {})}}


def get_tmpl(kube, name):
    st, _, obj = kube.request("GET", f"{TEMPLATES}/{name}")
    return obj if st == 200 else None


def pools(node):
    r = node.api.get("/v1/pools")
    assert r.status == 200, r
    return {p["name"]: p for p in r.json()["pools"]}


def operator_pools(node):
    return {n: p for n, p in pools(node).items() if n.startswith("sbxt-")}


def pool_of(kube, node, name):
    uid = get_tmpl(kube, name)["metadata"]["uid"]
    return pools(node).get(f"sbxt-{uid}")


def wait_pool(kube, node, name, what, pred, timeout=90):
    seen = {}

    def check():
        seen["pool"] = pool_of(kube, node, name)
        return seen["pool"] is not None and pred(seen["pool"])
    wait_for(check, timeout, what=f"{what} (last seen: {seen})")
    return seen["pool"]


def wait_status(kube, name, want, timeout=60):
    wait_for(lambda: (get_tmpl(kube, name) or {}).get("status", {}).get("warmPool") == want, timeout,
             what=f"status.warmPool {want} (last: {(get_tmpl(kube, name) or {}).get('status')})")


def wait_node_clean(node):
    """No operator pool left, and the waiting sandboxes of the removed ones gone
    (the agent deletes them in the background)."""
    wait_for(lambda: operator_pools(node) == {}, 60, what=f"the operator's pools to go: {operator_pools(node)}")
    wait_for(lambda: node.leftovers(zombies=False) == [], 60,
             what="the removed pool's waiting sandboxes to be gone")


def remove_template(kube, node, name):
    kube.kubectl("delete", "sbxt", name, "--ignore-not-found", "--timeout=60s")
    wait_node_clean(node)


def test_template_pool_claimed_refilled_and_removed(kube, node, operator, templates_dir):
    apply(kube, template("warm", templates_dir, {"sizePerNode": 2}))
    try:
        # the pool, with the shape a Sandbox of the template is created with
        p = wait_pool(kube, node, "warm", "two ready pooled sandboxes", lambda p: p["ready"] == 2)
        assert p["template"] == "host" and p["cpu"] == 0.25 and p["memory"] == 96 << 20, p
        assert p["pids"] == 100 and p["disk"] == 32 << 20 and p["size"] == 2 and p["kernel"] is False, p
        assert p["claims"] == 0, p
        wait_status(kube, "warm", {"ready": 2, "total": 2})
        # kubectl prints ready/total
        out = kube.kubectl("get", "sbxt", "warm").stdout
        head, row = out.splitlines()[:2]
        assert head.split()[-3:] == ["POOL-READY", "POOL-TOTAL", "AGE"], out
        # a path template's READY, DIGEST and SIZE print nothing: the last values are the pool's
        assert row.split()[-3:-1] == ["2", "2"], out

        # a Sandbox of the template (no resources of its own) is claimed from the pool
        apply(kube, sandbox("pooled", "warm"))
        obj = wait_ready(kube, "pooled")
        sid = obj["status"]["sandboxID"]
        assert obj["status"]["nodeName"] == "node-a"
        p = pool_of(kube, node, "warm")
        assert p["claims"] == 1, p
        sb = node.api.sandbox(sid).json()
        assert sb["template"] == "host" and sb["cpu"] == 0.25 and sb["memory"] == 96 << 20, sb
        assert run(node, sid, "echo up") == "up\n"

        # one of its own shape is a cold create: no claim
        apply(kube, sandbox("cold", "warm", {"cpu": "300m", "memory": "96Mi"}))
        wait_ready(kube, "cold")
        assert pool_of(kube, node, "warm")["claims"] == 1

        # the pool refills, and the status follows
        p = wait_pool(kube, node, "warm", "the pool refilled", lambda p: p["ready"] == 2 and p["made"] >= 3)
        wait_status(kube, "warm", {"ready": 2, "total": 2})
        delete_and_prove_gone(kube, node, "pooled")
        delete_and_prove_gone(kube, node, "cold")

        # warmPool removed: the pool goes, the status loses warmPool
        kube.kubectl("patch", "sbxt", "warm", "--type=json", "-p",
                     json.dumps([{"op": "remove", "path": "/spec/warmPool"}]))
        wait_node_clean(node)
        wait_for(lambda: "warmPool" not in get_tmpl(kube, "warm").get("status", {}), 60,
                 what="status.warmPool removed")
        assert "warmPool" not in get_tmpl(kube, "warm")["spec"]

        # a total, spread over the one node; then the template deleted
        kube.kubectl("patch", "sbxt", "warm", "--type=merge", "-p", json.dumps({"spec": {"warmPool": {"total": 1}}}))
        wait_pool(kube, node, "warm", "one ready pooled sandbox", lambda p: p["ready"] == 1 and p["size"] == 1)
        wait_status(kube, "warm", {"ready": 1, "total": 1})
    finally:
        for s in ("pooled", "cold"):
            kube.kubectl("delete", "sandbox", s, "--ignore-not-found", "--timeout=60s")
        remove_template(kube, node, "warm")


def test_agent_restart_gets_the_pool_back(kube, node, operator, templates_dir):
    """The agent's pools go with it (docs/agent-api.md): the next pass puts it back."""
    apply(kube, template("again", templates_dir, {"sizePerNode": 1}))
    try:
        wait_pool(kube, node, "again", "one ready pooled sandbox", lambda p: p["ready"] == 1)
        name = next(iter(operator_pools(node)))
        # what an agent restart leaves: no pool of that name
        assert node.api.delete(f"/v1/pools/{name}").status == 204
        p = wait_pool(kube, node, "again", "the pool put back", lambda p: p["ready"] == 1)
        assert p["claims"] == 0 and p["name"] == name
    finally:
        remove_template(kube, node, "again")


def test_two_templates_of_one_shape_share_one_pool(kube, node, operator, templates_dir):
    """The agent keeps one pool a shape (a second is refused, 409): of two
    templates of one shape the one that has the pool keeps it, the other's
    status says why it has none, and the operator does not put it again at
    every pass (the agent never refuses it, through several resyncs)."""
    apply(kube, template("twin-a", templates_dir, {"sizePerNode": 1}))
    try:
        wait_pool(kube, node, "twin-a", "one ready pooled sandbox", lambda p: p["ready"] == 1)
        log_start = len(operator.log.read_text())
        apply(kube, template("twin-b", templates_dir, {"sizePerNode": 2}))

        def says_why():
            st = ((get_tmpl(kube, "twin-b") or {}).get("status") or {}).get("warmPool") or {}
            return "SandboxTemplate default/twin-a has the same shape" in st.get("message", "")
        wait_for(says_why, 60, what="twin-b's status.warmPool saying why it has no pool")
        st = get_tmpl(kube, "twin-b")["status"]["warmPool"]
        assert st["ready"] == 0 and st["total"] == 0 and "node-a" in st["message"], st
        assert pool_of(kube, node, "twin-b") is None
        assert list(operator_pools(node)) == [f"sbxt-{get_tmpl(kube, 'twin-a')['metadata']['uid']}"]
        wait_status(kube, "twin-a", {"ready": 1, "total": 1})
        # Three more passes (--resync-seconds 2): none puts twin-b's pool.
        passes = lambda: operator.log.read_text()[log_start:].count("Warm pools: pass done")  # noqa: E731
        seen = passes()
        wait_for(lambda: passes() >= seen + 3, 60, what="three more passes")
        assert "refused the pool" not in operator.log.read_text()[log_start:], operator.log_tail()
        # twin-a gone: twin-b's pool is put at once
        kube.kubectl("delete", "sbxt", "twin-a", "--timeout=60s")
        wait_pool(kube, node, "twin-b", "two ready pooled sandboxes", lambda p: p["ready"] == 2)
        wait_status(kube, "twin-b", {"ready": 2, "total": 2})
    finally:
        kube.kubectl("delete", "sbxt", "twin-a", "--ignore-not-found", "--timeout=60s")
        remove_template(kube, node, "twin-b")


@pytest.mark.parametrize("spec,why", [({"startCmd": {"shell": "sleep 1000"}}, "startCmd"),
                                      ({"runtime": "runc"}, "names a runtime")])
def test_template_that_cannot_be_pooled_says_why(kube, node, operator, templates_dir, spec, why):
    """A startCmd runs in each sandbox at its start; a named runtime is not
    the pools' (they run each node's default): neither is pooled, and the
    template's status says why."""
    apply(kube, template("nopool", templates_dir, {"sizePerNode": 1}, **spec))
    try:
        wait_for(lambda: ((get_tmpl(kube, "nopool") or {}).get("status", {}).get("warmPool") or {})
                 .get("message", "").find(why) >= 0, 60, what="status.warmPool saying why not")
        st = get_tmpl(kube, "nopool")["status"]["warmPool"]
        assert st["ready"] == 0 and st["total"] == 0, st
        assert operator_pools(node) == {}
    finally:
        remove_template(kube, node, "nopool")


def test_gateway_create_claims_from_the_pool(kube, node, operator, templates_dir, tmp_path):
    """The E2B gateway's create (cluster backend) sets no resources: a template
    with a warm pool serves it from the pool. The gateway runs on a second
    replica (standby: the module's operator leads and reconciles)."""
    apply(kube, template("e2b", templates_dir, {"sizePerNode": 1}))
    gw = Operator(kube, node, tmp_path, extra=["--gateway-listen", "127.0.0.1:0", "--gateway-auth", "none",
                                               "--gateway-namespace", "default"])
    sid = None
    try:
        def port():
            m = re.search(r"gateway \(E2B API\) on \S+, tcp port (\d+)", gw.log.read_text())
            return int(m.group(1)) if m else None
        wait_for(lambda: port() or gw.proc.poll() is not None, 30, what="the gateway's port")
        assert gw.proc.poll() is None, gw.log_tail()
        client = Client(tcp=("127.0.0.1", port()))
        wait_pool(kube, node, "e2b", "one ready pooled sandbox", lambda p: p["ready"] == 1)
        r = client.post("/sandboxes", {"templateID": "e2b", "timeout": 120}, headers={"X-API-KEY": "e2b_any"})
        assert r.status == 201, r
        sid = r.json()["sandboxID"]
        assert pool_of(kube, node, "e2b")["claims"] == 1
        assert client.delete(f"/sandboxes/{sid}", headers={"X-API-KEY": "e2b_any"}).status == 204
        wait_for(lambda: not [o for o in kube.ok("GET", "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxes")
                              ["items"]], 60, what="the gateway's Sandbox gone")
    finally:
        assert gw.stop() == 0, gw.log_tail()
        remove_template(kube, node, "e2b")


def test_image_template_pool(kube, node, operator, registry):
    """An image template's pool: the agent pulls it and names it canonically
    (":latest" added); a Sandbox of the template claims from it and runs with
    the image's working directory and env."""
    img = Image([make_layer(busybox_base([{"name": "app", "type": "dir", "uid": 1000, "gid": 1000}]))],
                env=["PATH=/bin", "MARKER=pooled-image"], workdir="/app", user="1000")
    registry.client.push("it/pooled", "latest", img)
    obj = {"apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": "img"},
           "spec": {"source": {"image": f"{registry.host}/it/pooled"}, "resources": RESOURCES,
                    "languages": ["bash"], "warmPool": {"total": 1}}}
    apply(kube, obj)
    try:
        p = wait_pool(kube, node, "img", "one ready pooled sandbox", lambda p: p["ready"] == 1)
        assert p["template"] == f"image:{registry.host}/it/pooled:latest", p
        wait_status(kube, "img", {"ready": 1, "total": 1})
        # spec.user defaults to "user", which this image has not: root
        sbx = sandbox("from-image-pool", "img")
        sbx["spec"]["user"] = "root"
        apply(kube, sbx)
        obj = wait_ready(kube, "from-image-pool")
        sid = obj["status"]["sandboxID"]
        assert pool_of(kube, node, "img")["claims"] == 1
        # the image's working directory and env, the Sandbox's user
        assert run(node, sid, 'id -u; pwd; echo "$MARKER"') == "0\n/app\npooled-image\n"
        delete_and_prove_gone(kube, node, "from-image-pool")
    finally:
        kube.kubectl("delete", "sandbox", "from-image-pool", "--ignore-not-found", "--timeout=60s")
        remove_template(kube, node, "img")


@pytest.mark.parametrize("warm_pool", [{"sizePerNode": 1, "total": 2}, {}, {"sizePerNode": 1001},
                                       {"total": -1}, {"size": 2}])
def test_invalid_warm_pool_is_refused(kube, templates_dir, warm_pool):
    obj = template("badpool", templates_dir, None)
    obj["spec"]["warmPool"] = warm_pool
    p = kube.kubectl("apply", "-f", "-", input=json.dumps(obj), check=False)
    assert p.returncode != 0, p.stdout
    assert "warmPool" in p.stderr, p.stderr
    assert get_tmpl(kube, "badpool") is None
