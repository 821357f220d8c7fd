"""SandboxTemplate objects through the operator: a Sandbox takes its root
filesystem from the template's source.path and the resources it leaves out
from the template's; status.resources records what it was given; a template
whose image the agents cannot pull holds the Sandbox with a condition and an
Event until the template is fixed. Fixtures from test_operator.py."""

import json

from conftest import wait_for
from test_operator import (EVENTS, condition, delete_and_prove_gone, get_sbx, kube, lease, node,  # noqa: F401
                           operator, operator_alive, run, wait_ready)

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
        # fixing the template fixes the Sandbox (retried with backoff)
        kube.ok("PATCH", f"{TEMPLATES}/img", {"spec": {"source": {"image": None, "path": f"{templates_dir}/host"}}},
                ctype="application/merge-patch+json")
        obj = wait_ready(kube, "wants-image")
        assert node.api.sandbox(obj["status"]["sandboxID"]).json()["template"] == "host"
        delete_and_prove_gone(kube, node, "wants-image")
    finally:
        kube.kubectl("delete", "sandboxtemplate", "img", "--ignore-not-found")
    assert node.api.list_ids() == []
