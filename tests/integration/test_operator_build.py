"""SandboxTemplates with source.build through the operator (docs/build.md#
sandboxtemplates): the node a Sandbox is placed on builds the template's
image from the inline Dockerfile, the buildArgs and a ConfigMap's files as
the context, before the create; the template says Ready (reason Built) with
the digest; a failing RUN is BuildFailed with the step and its output on the
template and the Sandbox, with Events, and leaves nothing on the node; a
missing context ConfigMap holds the Sandbox until it exists; a spec change
builds again. Fixtures from test_operator.py (its node and operator)."""

import base64
import json
import urllib.parse

import pytest

from conftest import wait_for
from test_operator import (EVENTS, condition, delete_and_prove_gone, get_sbx, kube, lease, node,  # noqa: F401
                           operator, operator_alive, run, wait_ready)
from test_operator_template import TEMPLATES, apply, events_for, sandbox, store_state, tmpl_status

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SANDBOXES = "/apis/sandpit.dev/v1alpha1/namespaces/default/sandboxes"
RES = {"cpu": "250m", "memory": "64Mi", "disk": "32Mi", "pids": 64}

DOCKERFILE = """FROM host
ARG GREETING=hi
RUN echo "$GREETING built" > /built.txt
ENV APP_MODE=test
COPY hello.txt blob.bin /ctx/
"""
BLOB = bytes([0, 1, 2, 255, 10])


def build_template(name, build):
    return {"apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": name},
            "spec": {"source": {"build": build}}}


def reason_of(obj):
    return (condition(obj, "Ready") or {}).get("reason")


def tmpl_reason(kube, name):
    return reason_of({"status": tmpl_status(kube, name)})


def image_name(kube, name):
    st, _, obj = kube.request("GET", f"{TEMPLATES}/{name}")
    assert st == 200, obj
    return f"localhost/sandpit-template-{obj['metadata']['uid']}:latest"


def node_images(node):
    return {i["name"]: i for i in node.api.get("/v1/images").json()["images"]}


def remove_image(node, name):
    node.api.delete("/v1/images?image=" + urllib.parse.quote(name))


@pytest.fixture
def cleanup(kube, node):
    names = {"sandboxes": [], "templates": [], "images": []}
    yield names
    for n in names["sandboxes"]:
        kube.kubectl("delete", "sandbox", n, "--ignore-not-found", "--timeout=60s")
    for n in names["templates"]:
        kube.kubectl("delete", "sandboxtemplate", n, "--ignore-not-found")
    kube.request("DELETE", f"{CONFIGMAPS}/build-ctx")
    for img in names["images"]:
        remove_image(node, img)
    wait_for(lambda: node.api.list_ids() == [], 30, what="no sandbox left on the node")


def test_build_template_runs_and_rebuilds(kube, node, operator, cleanup):
    cleanup["sandboxes"] += ["built-box", "built-again", "built-v2"]
    cleanup["templates"].append("built")
    apply(kube, build_template("built", {"dockerfile": DOCKERFILE, "context": "build-ctx",
                                         "buildArgs": {"GREETING": "hello"}}))
    img = image_name(kube, "built")
    cleanup["images"].append(img)
    apply(kube, sandbox("built-box", "built", RES))

    # the context ConfigMap does not exist yet: said, nothing built or created
    wait_for(lambda: reason_of(get_sbx(kube, "built-box")) == "ContextNotFound", 30,
             what="Ready=False ContextNotFound")
    assert "build-ctx" in condition(get_sbx(kube, "built-box"), "Ready")["message"]
    wait_for(lambda: tmpl_reason(kube, "built") == "ContextNotFound", 30, what="template ContextNotFound")
    assert img not in node_images(node)
    assert node.api.list_ids() == []

    # with it: built on the node, the sandbox runs from the image
    kube.ok("POST", CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "build-ctx"},
                                 "data": {"hello.txt": "from the context\n"},
                                 "binaryData": {"blob.bin": base64.b64encode(BLOB).decode()}})
    obj = wait_ready(kube, "built-box")
    sid = obj["status"]["sandboxID"]
    assert node.api.sandbox(sid).json()["template"] == f"image:{img}"
    assert run(node, sid, "cat /built.txt") == "hello built\n"
    assert run(node, sid, 'echo "$APP_MODE"') == "test\n"
    assert run(node, sid, "cat /ctx/hello.txt") == "from the context\n"
    assert run(node, sid, "od -An -tx1 /ctx/blob.bin").split() == ["00", "01", "02", "ff", "0a"]
    st = tmpl_status(kube, "built")
    ready = condition({"status": st}, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Built", st
    assert st["image"] == img and st["observedGeneration"] == 1, st
    assert st["digest"] == node_images(node)[img]["digest"] and st["digest"] in ready["message"], st
    assert events_for(kube, "built", "Built")
    cols = kube.kubectl("get", "sbxt", "built").stdout
    assert st["digest"][:20] in cols, cols

    # a second Sandbox: the build runs again, every step cached: no new layer, same image
    layers = store_state(node)[0]
    apply(kube, sandbox("built-again", "built", RES))
    obj2 = wait_ready(kube, "built-again")
    assert run(node, obj2["status"]["sandboxID"], "cat /built.txt") == "hello built\n"
    assert store_state(node)[0] == layers
    assert tmpl_status(kube, "built")["digest"] == st["digest"]
    delete_and_prove_gone(kube, node, "built-again")

    # a spec change (generation 2) builds the new image for the next Sandbox
    kube.ok("PATCH", f"{TEMPLATES}/built", {"spec": {"source": {"build": {"buildArgs": {"GREETING": "bonjour"}}}}},
            ctype="application/merge-patch+json")
    apply(kube, sandbox("built-v2", "built", RES))
    obj3 = wait_ready(kube, "built-v2")
    assert run(node, obj3["status"]["sandboxID"], "cat /built.txt") == "bonjour built\n"
    st2 = tmpl_status(kube, "built")
    assert st2["observedGeneration"] == 2 and reason_of({"status": st2}) == "Built", st2
    assert st2["digest"] != st["digest"] and st2["digest"] == node_images(node)[img]["digest"]
    # the first sandbox keeps running from what it was made of
    assert run(node, sid, "cat /built.txt") == "hello built\n"
    delete_and_prove_gone(kube, node, "built-v2")
    delete_and_prove_gone(kube, node, "built-box")


def test_build_failure_leaves_nothing_until_fixed(kube, node, operator, cleanup):
    cleanup["sandboxes"].append("broken-box")
    cleanup["templates"].append("broken")
    apply(kube, build_template("broken", {"dockerfile": "FROM host\nRUN echo about to fail; exit 3\n"}))
    img = image_name(kube, "broken")
    cleanup["images"].append(img)
    before = store_state(node)
    apply(kube, sandbox("broken-box", "broken", RES))
    wait_for(lambda: reason_of(get_sbx(kube, "broken-box")) == "BuildFailed", 60, what="Ready=False BuildFailed")
    obj = get_sbx(kube, "broken-box")
    msg = condition(obj, "Ready")["message"]
    assert "line 2" in msg and "exited with 3" in msg and "about to fail" in msg, msg
    assert obj["status"]["phase"] == "Pending"
    assert events_for(kube, "broken-box", "BuildFailed")
    wait_for(lambda: tmpl_reason(kube, "broken") == "BuildFailed", 30, what="template BuildFailed")
    tready = condition({"status": tmpl_status(kube, "broken")}, "Ready")
    assert tready["status"] == "False" and "exited with 3" in tready["message"], tready
    assert events_for(kube, "broken", "BuildFailed")
    # nothing of it on the node: no image, no layer; and (between the retries,
    # which build again with back-off) no build sandbox and nothing staged
    assert img not in node_images(node)
    assert store_state(node)[0] == before[0]  # (the FROM step's cache record may stay: no layer)
    wait_for(lambda: node.api.list_ids() == [] and store_state(node)[2] == before[2], 60,
             what="no build sandbox and nothing staged on the node")
    # the retries say nothing new: one Event on each
    assert len(events_for(kube, "broken", "BuildFailed")) == 1
    assert len(events_for(kube, "broken-box", "BuildFailed")) == 1

    # a Dockerfile that does not parse: the agent's 400, said the same way
    kube.ok("PATCH", f"{TEMPLATES}/broken", {"spec": {"source": {"build": {"dockerfile": "FROM host\nFROBNICATE x\n"}}}},
            ctype="application/merge-patch+json")
    wait_for(lambda: "FROBNICATE" in condition(get_sbx(kube, "broken-box"), "Ready")["message"], 60,
             what="the parse error on the Sandbox")
    assert reason_of(get_sbx(kube, "broken-box")) == "BuildFailed"
    assert img not in node_images(node)

    # fixed: built and running
    kube.ok("PATCH", f"{TEMPLATES}/broken", {"spec": {"source": {"build": {"dockerfile": "FROM host\nRUN echo fixed > /f\n"}}}},
            ctype="application/merge-patch+json")
    obj = wait_ready(kube, "broken-box")
    assert run(node, obj["status"]["sandboxID"], "cat /f") == "fixed\n"
    assert tmpl_reason(kube, "broken") == "Built"
    delete_and_prove_gone(kube, node, "broken-box")


def test_build_spec_checked(kube, node, operator, cleanup):
    # the schema: exactly one of image, path and build
    p = kube.kubectl("apply", "-f", "-", check=False, input=json.dumps(
        {"apiVersion": "sandpit.dev/v1alpha1", "kind": "SandboxTemplate", "metadata": {"name": "both"},
         "spec": {"source": {"image": "x", "build": {"dockerfile": "FROM host\n"}}}}))
    assert p.returncode != 0 and "exactly one of image, path and build" in p.stderr, p.stderr
    p = kube.kubectl("apply", "-f", "-", check=False, input=json.dumps(
        build_template("nodf", {"context": "x"})))
    assert p.returncode != 0 and "dockerfile" in p.stderr, p.stderr

    # the operator: an ARG name the Dockerfile cannot have
    cleanup["sandboxes"].append("badarg-box")
    cleanup["templates"].append("badarg")
    apply(kube, build_template("badarg", {"dockerfile": "FROM host\n", "buildArgs": {"no-dash": "1"}}))
    apply(kube, sandbox("badarg-box", "badarg", RES))
    wait_for(lambda: reason_of(get_sbx(kube, "badarg-box")) == "InvalidTemplate", 30, what="InvalidTemplate")
    msg = condition(get_sbx(kube, "badarg-box"), "Ready")["message"]
    assert "buildArgs" in msg and "no-dash" in msg, msg
    assert node.api.list_ids() == []
    assert image_name(kube, "badarg") not in node_images(node)


def test_sandboxes_at_once_build_once(kube, node, operator, cleanup):
    """Two Sandboxes of a new template placed together: one build on the node
    at a time, the second finds the steps cached (one RUN layer, not two)."""
    cleanup["sandboxes"] += ["twin-a", "twin-b"]
    cleanup["templates"].append("twin")
    apply(kube, build_template("twin", {"dockerfile": "FROM host\nRUN date +%s%N > /stamp\n"}))
    cleanup["images"].append(image_name(kube, "twin"))
    layers = set(store_state(node)[0])
    for n in ("twin-a", "twin-b"):
        kube.ok("POST", SANDBOXES, sandbox(n, "twin", RES))
    a, b = wait_ready(kube, "twin-a"), wait_ready(kube, "twin-b")
    assert len(set(store_state(node)[0]) - layers) == 1
    stamps = {run(node, o["status"]["sandboxID"], "cat /stamp") for o in (a, b)}
    assert len(stamps) == 1, stamps
    delete_and_prove_gone(kube, node, "twin-a")
    delete_and_prove_gone(kube, node, "twin-b")
