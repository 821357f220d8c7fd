"""SandboxTemplate objects through the operator: a Sandbox takes its root
filesystem from the template's source.path and the resources it leaves out
from the template's; status.resources records what it was given; a template
whose image the agents cannot pull holds the Sandbox with a condition and an
Event until the template is fixed; a private image pulled with the
template's pullSecret (a real docker-registry with htpasswd on loopback),
its digest and size in the template's status, and refused to a template
without the credentials though the node has it. Fixtures from
test_operator.py, but the node's agent knows the test registry."""

import base64
import json
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import Client, rand_suffix, start_tcp_agent, stop_agent, wait_for
from oci_images import Image, Registry, busybox_base, make_layer
from test_operator import (EVENTS, condition, delete_and_prove_gone, get_sbx, kube, lease,  # noqa: F401
                           operator, operator_alive, run, wait_ready)

SECRETS = "/api/v1/namespaces/default/secrets"


@pytest.fixture(scope="module")
def registry():
    d = Path(tempfile.mkdtemp(prefix="sandpit-it-optmpl-reg-"))
    reg = Registry(d / "reg", htpasswd=("puller", "right-" + rand_suffix()))
    yield reg
    reg.stop()
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def node(templates_dir, tmp_path_factory, registry):
    """test_operator's node, told the test registry speaks plain HTTP; no
    credentials of its own; no runsc (a path that does not exist, whether
    the host has one or not)."""
    a = start_tcp_agent("op", templates_dir, tmp_path_factory,
                        extra_args=["--insecure-registry", registry.host,
                                    "--runtime-path", "runsc=/nonexistent/sandpit-it/runsc"])
    a.api = Client(tcp=("127.0.0.1", a.port), token=a.token)
    yield a
    stop_agent(a)

TEMPLATES = "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxtemplates"


def apply(kube, obj):
    kube.kubectl("apply", "-f", "-", input=json.dumps(obj))


def template(name, source, resources=None):
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": name},
            "spec": {"source": source, **({"resources": resources} if resources else {})}}


def sandbox(name, tmpl, resources=None):
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": name},
            "spec": {"template": tmpl, "timeout": "10m", **({"resources": resources} if resources else {})}}


def test_template_gives_rootfs_and_default_resources(kube, node, operator, templates_dir):
    apply(kube, template("small", {"path": f"{templates_dir}/host/"},
                         {"cpu": "250m", "memory": "96Mi", "disk": "32Mi", "pids": 100}))
    try:
        apply(kube, sandbox("from-tmpl", "small", {"memory": "128Mi"}))
        obj = wait_ready(kube, "from-tmpl")
        st = obj["status"]
        # what it was given: the Sandbox's memory, the rest from the template
        assert st["resources"] == {"cpu": "250m", "memory": "128Mi", "disk": "32Mi", "pids": 100}
        sb = node.api.sandbox(st["sandboxID"]).json()
        assert sb["template"] == "host"
        assert sb["cpu"] == 0.25 and sb["memory"] == 128 << 20 and sb["pids"] == 100 and sb["disk"] == 32 << 20
        # the cgroup got them (the agent's metrics read the sandbox's cgroup)
        m = node.api.get(f"/v1/sandboxes/{st['sandboxID']}/metrics").json()
        assert m["pids_limit"] == 100 and m["memory_limit"] == 128 << 20, m
        assert run(node, st["sandboxID"], "echo up") == "up\n"
        delete_and_prove_gone(kube, node, "from-tmpl")

        # no SandboxTemplate object: the agents' template of that name, built-in defaults
        apply(kube, sandbox("plain", "host"))
        st = wait_ready(kube, "plain")["status"]
        assert st["resources"] == {"cpu": "1", "memory": "512Mi", "disk": "512Mi", "pids": 512}
        assert node.api.sandbox(st["sandboxID"]).json()["template"] == "host"
        delete_and_prove_gone(kube, node, "plain")
    finally:
        kube.kubectl("delete", "sandboxtemplate", "small", "--ignore-not-found")
    assert node.api.list_ids() == []


def test_image_template_waits_until_fixed(kube, node, operator, templates_dir):
    # The node's agent has no --default-registry: it cannot pull a name without one.
    apply(kube, template("img", {"image": "python:3.12-slim"}))
    try:
        apply(kube, sandbox("wants-image", "img", {"cpu": "250m", "memory": "64Mi", "disk": "16Mi", "pids": 64}))
        wait_for(lambda: (condition(get_sbx(kube, "wants-image"), "Ready") or {}).get("reason") == "ImagePullFailed",
                 30, what="Ready=False ImagePullFailed")
        obj = get_sbx(kube, "wants-image")
        ready = condition(obj, "Ready")
        assert ready["status"] == "False" and "python:3.12-slim" in ready["message"], ready
        assert "--default-registry" in ready["message"], ready
        assert obj["status"]["phase"] == "Pending"
        assert node.api.list_ids() == []
        st, _, evs = kube.request("GET", EVENTS)
        assert any(e.get("reason") == "ImagePullFailed" and e["regarding"]["name"] == "wants-image"
                   for e in evs["items"]), evs
        wait_for(lambda: (condition({"status": tmpl_status(kube, "img")}, "Ready") or {}).get("reason")
                 == "ImagePullFailed", 30, what="template Ready=False ImagePullFailed")
        said_once_over_retries(kube, operator, ["wants-image", "img"], "ImagePullFailed")
        # fixing the template fixes the Sandbox (retried with backoff)
        kube.ok("PATCH", f"{TEMPLATES}/img", {"spec": {"source": {"image": None, "path": f"{templates_dir}/host"}}},
                ctype="application/merge-patch+json")
        obj = wait_ready(kube, "wants-image")
        assert node.api.sandbox(obj["status"]["sandboxID"]).json()["template"] == "host"
        delete_and_prove_gone(kube, node, "wants-image")
    finally:
        kube.kubectl("delete", "sandboxtemplate", "img", "--ignore-not-found")
    assert node.api.list_ids() == []


def dockerconfig_secret(name, host, user, password):
    cfg = {"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()}}


def tmpl_status(kube, name):
    st, _, obj = kube.request("GET", f"{TEMPLATES}/{name}")
    assert st == 200, obj
    return obj.get("status", {})


def events_for(kube, name, reason):
    st, _, evs = kube.request("GET", EVENTS)
    return [e for e in evs["items"] if e.get("reason") == reason and e["regarding"]["name"] == name]


def reconcile_errors(op):
    """The operator's reconciles that ended in an error (each retried with
    backoff): from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    got = [float(line.split()[-1]) for line in text.splitlines()
           if line.startswith('sandpit_operator_reconciles_total{result="error"} ')]
    assert len(got) == 1, text
    return got[0]


def said_once_over_retries(kube, operator, names, reason):
    """After three more retries of what waits for the user: one Warning Event
    of reason about each of names (the retries, and a reconcile that reads
    its own status write late from the informer's cache, say nothing new)."""
    n = reconcile_errors(operator)
    wait_for(lambda: reconcile_errors(operator) >= n + 3, 60, what="three more retries")
    for name in names:
        evs = events_for(kube, name, reason)
        assert len(evs) == 1 and evs[0]["type"] == "Warning", evs


def store_state(node):
    d = node.root / "images"
    return (sorted(p.name for p in (d / "layers").iterdir()), sorted(p.name for p in (d / "images").iterdir()),
            sorted(f"{sub.name}/{p.name}" for sub in (d / "tmp").iterdir() for p in sub.iterdir()))


def test_image_template_with_pull_secret(kube, node, operator, registry):
    layer = make_layer(busybox_base([{"name": "etc/motd", "type": "file", "data": "private\n"}]))
    img = Image([layer], env=["PATH=/bin"])
    registry.client.push("it/private", "v1", img)
    ref = f"{registry.host}/it/private:v1"
    size = len(layer[0])
    wrong = "wrong-" + rand_suffix()
    log0 = node.log_size()
    sbx_res = {"cpu": "250m", "memory": "64Mi", "disk": "16Mi", "pids": 64}
    try:
        # no such Secret: said on the Sandbox and the template; nothing asked of the node
        apply(kube, template("priv", {"image": ref, "pullSecret": "regcred"}))
        apply(kube, sandbox("priv-box", "priv", sbx_res))
        wait_for(lambda: (condition(get_sbx(kube, "priv-box"), "Ready") or {}).get("reason") == "PullSecretNotFound",
                 30, what="Ready=False PullSecretNotFound")
        assert "regcred" in condition(get_sbx(kube, "priv-box"), "Ready")["message"]
        wait_for(lambda: (condition({"status": tmpl_status(kube, "priv")}, "Ready") or {}).get("reason")
                 == "PullSecretNotFound", 30, what="template Ready=False PullSecretNotFound")
        assert events_for(kube, "priv-box", "PullSecretNotFound")
        assert node.api.list_ids() == []
        before = store_state(node)

        # wrong credentials: ImagePullFailed, an Event, nothing of the image on the node
        kube.ok("POST", SECRETS, dockerconfig_secret("regcred", registry.host, registry.user, wrong))
        wait_for(lambda: (condition(get_sbx(kube, "priv-box"), "Ready") or {}).get("reason") == "ImagePullFailed",
                 60, what="Ready=False ImagePullFailed")
        msg = condition(get_sbx(kube, "priv-box"), "Ready")["message"]
        assert "credentials refused" in msg, msg
        assert events_for(kube, "priv-box", "ImagePullFailed")
        wait_for(lambda: (condition({"status": tmpl_status(kube, "priv")}, "Ready") or {}).get("reason")
                 == "ImagePullFailed", 30, what="template Ready=False ImagePullFailed")
        assert events_for(kube, "priv", "ImagePullFailed")
        assert store_state(node) == before
        assert node.api.list_ids() == []

        # the right ones: the sandbox runs from the image; the template says digest and size
        kube.ok("PATCH", f"{SECRETS}/regcred",
                dockerconfig_secret("regcred", registry.host, registry.user, registry.password),
                ctype="application/merge-patch+json")
        obj = wait_ready(kube, "priv-box")
        r = node.api.exec(obj["status"]["sandboxID"], shell="cat /etc/motd", user="root")
        assert r.exit_code == 0 and r.stdout == "private\n", r
        st = tmpl_status(kube, "priv")
        assert st["digest"] == img.digest and st["size"] == size, st
        assert condition({"status": st}, "Ready")["status"] == "True", st
        cols = kube.kubectl("get", "sbxt", "priv").stdout
        assert img.digest[:20] in cols and str(size) in cols, cols

        # the node has the image now; a template without the credentials is refused it
        apply(kube, template("nocreds", {"image": ref}))
        apply(kube, sandbox("nocreds-box", "nocreds", sbx_res))
        wait_for(lambda: (condition(get_sbx(kube, "nocreds-box"), "Ready") or {}).get("reason") == "ImagePullFailed",
                 60, what="Ready=False ImagePullFailed without credentials")
        msg = condition(get_sbx(kube, "nocreds-box"), "Ready")["message"]
        assert "the node has the image, but the registry does not give it" in msg, msg
        assert (condition({"status": tmpl_status(kube, "nocreds")}, "Ready") or {}).get("status") == "False"
        assert [sid for sid in node.api.list_ids()] == [obj["status"]["sandboxID"]]
        delete_and_prove_gone(kube, node, "nocreds-box")
        delete_and_prove_gone(kube, node, "priv-box")

        # the password is in no status, Event or agent log
        st, _, evs = kube.request("GET", EVENTS)
        everything = json.dumps([evs, tmpl_status(kube, "priv"), tmpl_status(kube, "nocreds")])
        assert registry.password not in everything and wrong not in everything
        log = node.log_tail(lines=1000000, since=log0) + operator.log.read_text()
        assert registry.password not in log and wrong not in log
        b64 = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
        assert b64 not in log and b64 not in everything
    finally:
        for n in ("priv-box", "nocreds-box"):
            kube.kubectl("delete", "sandbox", n, "--ignore-not-found")
        for n in ("priv", "nocreds"):
            kube.kubectl("delete", "sandboxtemplate", n, "--ignore-not-found")
        kube.request("DELETE", f"{SECRETS}/regcred")
        node.api.delete(f"/v1/images?image={ref}")
    assert node.api.list_ids() == []


def test_template_start_cmd(kube, node, operator, templates_dir):
    """spec.startCmd: the Sandbox is Ready only once its port answers inside
    the sandbox (the first connect after Ready works, with no retry); its
    process is listed; one that exits at once fails the Sandbox with its exit
    code, and nothing of it stays on the node."""
    from test_start_cmd import CONNECT, SERVER
    up = template("with-start", {"path": f"{templates_dir}/host"})
    up["spec"]["startCmd"] = {"command": ["python3", "-c", SERVER, "8130"], "waitForPort": 8130,
                              "readyTimeout": "30s"}
    down = template("bad-start", {"path": f"{templates_dir}/host"})
    down["spec"]["startCmd"] = {"shell": "echo no-luck >&2; exit 3", "waitForPort": 8131}
    both = template("two-starts", {"path": f"{templates_dir}/host"})
    both["spec"]["startCmd"] = {"command": ["true"], "shell": "true"}
    p = kube.kubectl("apply", "-f", "-", input=json.dumps(both), check=False)
    assert p.returncode != 0 and "exactly one of command, shell and fromImage" in p.stderr, p.stderr
    slow = template("slow-start", {"path": f"{templates_dir}/host"})
    slow["spec"]["startCmd"] = {"command": ["true"], "readyTimeout": "5m"}
    p = kube.kubectl("apply", "-f", "-", input=json.dumps(slow), check=False)
    assert p.returncode != 0 and "readyTimeout must be between 1s and 90s" in p.stderr, p.stderr
    apply(kube, up)
    apply(kube, down)
    try:
        apply(kube, sandbox("starts", "with-start"))
        sid = wait_ready(kube, "starts")["status"]["sandboxID"]
        r = node.api.exec(sid, cmd=["python3", "-c", CONNECT, "8130"])
        assert r.exit_code == 0 and r.stdout.strip() == "hello from the start command", r
        procs = [p for p in node.api.processes(sid) if p.get("tag") == "start_cmd"]
        assert len(procs) == 1 and procs[0]["running"], node.api.processes(sid)
        delete_and_prove_gone(kube, node, "starts")

        apply(kube, sandbox("fails", "bad-start"))
        wait_for(lambda: (condition(get_sbx(kube, "fails"), "Ready") or {}).get("reason") == "CreateFailed",
                 60, what="Ready=False CreateFailed")
        ready = condition(get_sbx(kube, "fails"), "Ready")
        assert "exited with code 3" in ready["message"] and "no-luck" in ready["message"], ready
        assert node.api.list_ids() == []
        delete_and_prove_gone(kube, node, "fails")
    finally:
        kube.kubectl("delete", "sandboxtemplate", "with-start", "bad-start", "--ignore-not-found")
    assert node.api.list_ids() == []


def test_template_runtime(kube, node, operator, templates_dir):
    """spec.runtime reaches the node: one it cannot run (runsc: not installed on
    this node) leaves the Sandbox Pending
    with Ready=False RuntimeUnavailable and an Event, nothing on the node;
    changing the template to a runtime the node has fixes it."""
    t = template("gvisor", {"path": f"{templates_dir}/host"})
    t["spec"]["runtime"] = "runsc"
    apply(kube, t)
    bad = template("bad-runtime", {"path": f"{templates_dir}/host"})
    bad["spec"]["runtime"] = "kata"
    p = kube.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert p.returncode != 0 and "kata" in p.stderr, p.stderr
    try:
        apply(kube, sandbox("in-gvisor", "gvisor"))
        wait_for(lambda: (condition(get_sbx(kube, "in-gvisor"), "Ready") or {}).get("reason")
                 == "RuntimeUnavailable", 30, what="Ready=False RuntimeUnavailable")
        obj = get_sbx(kube, "in-gvisor")
        ready = condition(obj, "Ready")
        assert ready["status"] == "False" and "runtime runsc" in ready["message"], ready
        assert obj["status"]["phase"] == "Pending"
        assert node.api.list_ids() == []
        st, _, evs = kube.request("GET", EVENTS)
        assert any(e.get("reason") == "RuntimeUnavailable" and e["regarding"]["name"] == "in-gvisor"
                   for e in evs["items"]), evs
        said_once_over_retries(kube, operator, ["in-gvisor"], "RuntimeUnavailable")
        kube.ok("PATCH", f"{TEMPLATES}/gvisor", {"spec": {"runtime": "runc"}},
                ctype="application/merge-patch+json")
        sid = wait_ready(kube, "in-gvisor")["status"]["sandboxID"]
        assert "runtime" not in node.api.sandbox(sid).json()  # the node's default, runc
        assert run(node, sid, "echo under-runc") == "under-runc\n"
        delete_and_prove_gone(kube, node, "in-gvisor")
    finally:
        kube.kubectl("delete", "sandboxtemplate", "gvisor", "--ignore-not-found")
    assert node.api.list_ids() == []
