"""Images from a Dockerfile (docs/build.md): POST /v1/templates/build and
`sandpit template build`. Builds FROM the `host` template: RUN in sandboxes
of the agent's own, COPY from the context, ENV/WORKDIR/USER/CMD in the
result's config, deletions as whiteouts, the step cache, failures that leave
nothing behind, and contexts that try to reach outside."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from conftest import REPO, UnixHTTPConnection, assert_error, rand_suffix, start_agent, stop_agent, wait_for
from oci_images import FakeRegistry, Image, Registry, busybox_base, make_layer

CLI = REPO / "build" / "bin" / "sandpit"


def context_tar(files, symlinks=None, raw_files=None):
    """A tar of {path: text} (and {path: target} symlinks, {path: bytes}) as bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, text in list(files.items()) + list((raw_files or {}).items()):
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            t.addfile(info)
    return buf.getvalue()


def build(client, tag, files, symlinks=None, build_args=(), dockerfile=None, target=None, raw_files=None):
    q = [("tag", tag)] + [("build_arg", a) for a in build_args]
    if dockerfile:
        q.append(("dockerfile", dockerfile))
    if target:
        q.append(("target", target))
    r = client.post("/v1/templates/build?" + urllib.parse.urlencode(q), raw=context_tar(files, symlinks, raw_files),
                    headers={"Content-Type": "application/x-tar"}, timeout=600)
    if r.status != 200:
        return r, None
    events = [json.loads(line) for line in r.body.decode().splitlines() if line.strip()]
    return r, events


def ends(events):
    """The step-end events: {step: cached}."""
    return {e["step"]: e["cached"] for e in events if "cached" in e}


def final(events):
    assert events, "no progress at all"
    return events[-1]


def layers(agent):
    return sorted(os.listdir(agent.root / "images" / "layers"))


def build_sandboxes(client):
    r = client.get("/v1/sandboxes")
    assert r.status == 200, r
    return [s["id"] for s in r.json()["sandboxes"] if "sandpit.build" in (s.get("labels") or {})]


def no_leftovers(agent, client):
    """No build sandbox, none being torn down, nothing staged in the store's tmp."""
    assert build_sandboxes(client) == []
    wait_for(lambda: client.get("/v1/info").json()["teardown_pending"] == 0, 60, what="teardowns")
    tmp = agent.root / "images" / "tmp"  # tmp/<agent pid>/ holds what is staged
    left = [str(p) for d in tmp.iterdir() for p in d.rglob("*")]
    assert left == [], f"left in the store's tmp: {left}"


DOCKERFILE = """\
# a comment
FROM host
ARG GREETING=hello
ENV APP_MODE=test \\
    OTHER="two words"
WORKDIR /srv/app
COPY data.txt ./
COPY sub /srv/app/sub/
RUN echo "$GREETING from run in $(pwd)" > /srv/app/run.txt && \\
    mkdir -p /srv/gone && echo x > /srv/gone/file && chown 1000:1000 /srv/gone
RUN ["/bin/sh", "-c", "rm /srv/gone/file"]
USER 1000
CMD ["sh", "-c", "echo started"]
"""


def files(data="data v1\n"):
    return {"Dockerfile": DOCKERFILE, "data.txt": data, "sub/a.txt": "a\n", "sub/deeper/b.txt": "b\n"}


def test_build_run_copy_config_and_cache(agent, client):
    tag = "it-build-" + rand_suffix()
    name = f"localhost/{tag}:latest"
    start = set(layers(agent))
    r, ev = build(client, tag, files(), build_args=["GREETING=hi"])
    assert r.status == 200, r
    assert "image" in final(ev), final(ev)
    assert final(ev)["image"] == name
    steps = ends(ev)
    assert len(steps) == 10 and not any(steps.values()), steps
    # Every instruction announced itself with its line.
    assert [e["line"] for e in ev if "instruction" in e] == [2, 3, 4, 6, 7, 8, 9, 11, 12, 13]
    before = layers(agent)
    # Two COPY, one WORKDIR (/srv/app is new), two RUN layers; the RUN layers
    # hold what the commands did, not the sandbox's mount points.
    made = set(before) - start
    assert len(made) == 5, made
    for lay in made:
        top = os.listdir(agent.root / "images" / "layers" / lay)
        assert not [n for n in top if n.startswith(".sandpit")], top

    # The result as a template: files, config.
    sb = client.create(template="image:" + name)
    sid = sb["id"]
    assert client.sh(sid, "cat /srv/app/run.txt") == "hi from run in /srv/app\n"
    assert client.sh(sid, "cat /srv/app/data.txt /srv/app/sub/a.txt /srv/app/sub/deeper/b.txt") == "data v1\na\nb\n"
    assert client.sh(sid, "echo $APP_MODE/$OTHER") == "test/two words\n"
    assert client.sh(sid, "pwd") == "/srv/app\n"
    assert client.sh(sid, "id -u") == "1000\n"
    # A RUN's files keep the owners the command gave them (a user-namespaced
    # build sandbox's upper layer holds host ids: packed as its own again).
    assert client.sh(sid, "stat -c %u:%g /srv/app/run.txt /srv/gone") == "0:0\n1000:1000\n"
    # The second RUN's deletion is a whiteout over the first RUN's layer.
    assert client.sh(sid, "ls -A /srv/gone; test ! -e /srv/gone/file && echo gone") == "gone\n"
    # The ARG is not in the image's env.
    assert client.sh(sid, "echo ${GREETING:-unset}") == "unset\n"
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    img = [i for i in client.get("/v1/images").json()["images"] if i["name"] == name]
    assert len(img) == 1 and img[0]["config"]["cmd"] == ["sh", "-c", "echo started"], img
    assert img[0]["config"]["user"] == "1000"
    # The cache's records are not images of their own.
    assert not [i for i in client.get("/v1/images").json()["images"] if "sandpit-build-cache" in i["name"]]

    # The same build again: every step from the cache, no new layer.
    r, ev = build(client, tag, files(), build_args=["GREETING=hi"])
    assert r.status == 200 and "image" in final(ev), ev
    assert all(ends(ev).values()) and len(ends(ev)) == 10, ends(ev)
    assert not [e for e in ev if "stream" in e], "a cached RUN ran"
    assert layers(agent) == before

    # A changed COPY input: the steps before it cached, it and all after redone.
    r, ev = build(client, tag, files(data="data v2\n"), build_args=["GREETING=hi"])
    assert r.status == 200 and "image" in final(ev), ev
    steps = ends(ev)
    assert [steps[i] for i in range(1, 11)] == [True] * 4 + [False] * 6, steps
    # A changed build arg redoes the RUN that sees it.
    r, ev = build(client, tag, files(data="data v2\n"), build_args=["GREETING=yo"])
    steps = ends(ev)
    assert [steps[i] for i in range(1, 11)] == [True] * 6 + [False] * 4, steps
    sb = client.create(template="image:" + name)
    assert client.sh(sb["id"], "cat /srv/app/data.txt /srv/app/run.txt") == "data v2\nyo from run in /srv/app\n"
    assert client.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    no_leftovers(agent, client)
    assert client.delete("/v1/images?image=" + urllib.parse.quote(name)).status == 204


def test_failing_run_leaves_nothing(agent, client):
    tag = "it-build-fail-" + rand_suffix()
    df = "FROM host\nRUN mkdir -p /srv && echo made > /srv/made\nRUN echo oops-output; echo to-stderr >&2; exit 3\n"
    r, ev = build(client, tag, {"Dockerfile": df})
    assert r.status == 200, r
    assert final(ev).get("exit_code") == 3, final(ev)
    before = layers(agent)
    r, ev = build(client, tag, {"Dockerfile": df.replace("made >", "made2 >")})
    end = final(ev)
    assert end.get("exit_code") == 3, end
    assert "line 3" in end["error"] and "exited with 3" in end["error"], end
    assert "oops-output" in end["output_tail"] and "to-stderr" in end["output_tail"], end
    # The step before the failure made a layer, the failing one none.
    assert len(layers(agent)) == len(before) + 1
    no_leftovers(agent, client)
    names = [i["name"] for i in client.get("/v1/images").json()["images"]]
    assert f"localhost/{tag}:latest" not in names


def test_client_gone_mid_run(agent, client):
    """A client that hangs up while a RUN runs: its sandbox goes, nothing stays."""
    tag = "it-build-gone-" + rand_suffix()
    before = layers(agent)
    body = context_tar({"Dockerfile": "FROM host\nRUN echo started; sleep 300\n"})
    conn = UnixHTTPConnection(agent.socket, timeout=120)
    conn.request("POST", f"/v1/templates/build?tag={tag}", body=body,
                 headers={"Host": "localhost", "Content-Type": "application/x-tar"})
    resp = conn.getresponse()
    assert resp.status == 200
    while True:  # until the command runs (the raw chunked stream: a line holds it)
        line = resp.fp.readline()
        assert line, "the stream ended before the command started"
        if b"started" in line:
            break
    assert len(build_sandboxes(client)) == 1
    conn.close()
    wait_for(lambda: build_sandboxes(client) == [], 60, what="the build's sandbox to go")
    no_leftovers(agent, client)
    assert layers(agent) == before


@pytest.mark.skipif(not shutil.which("docker-registry") or not Path("/usr/bin/busybox").exists(),
                    reason="docker-registry and busybox-static are needed (mk/deps.sh)")
def test_from_a_registry_image(templates_dir, tmp_path):
    """FROM an image pulled from a registry on loopback: its layers and config
    under the build's, a RUN deleting one of its files (a whiteout over a
    pulled layer)."""
    reg = Registry(tmp_path / "reg")
    a = None
    try:
        base = make_layer(busybox_base([{"name": "etc/motd", "type": "file", "data": "base motd\n"},
                                        {"name": "bin/rm", "type": "symlink", "target": "busybox"}]))
        reg.client.push("it/base", "v1", Image([base], env=["PATH=/bin", "FROM_IMAGE=1"], user="1000"))
        a = start_agent("build-reg", templates_dir, extra_args=["--insecure-registry", reg.host])
        c = a.client
        df = (f"FROM {reg.host}/it/base:v1\nUSER root\nRUN rm /etc/motd && echo built > /built\n"
              "ENV MORE=2\nUSER 1000\n")
        r, ev = build(c, "on-image", {"Dockerfile": df})
        assert r.status == 200 and "image" in final(ev), ev
        assert final(ev)["layers"] == 2 and "base" not in final(ev), final(ev)
        sb = c.create(template="image:localhost/on-image")
        out = c.sh(sb["id"], "cat /built; test -e /etc/motd || echo no-motd; echo $FROM_IMAGE$MORE; id -u")
        assert out == "built\nno-motd\n12\n1000\n", out
        assert c.delete(f"/v1/sandboxes/{sb['id']}").status == 204
        # FROM a build of this node by its short name.
        r, ev = build(c, "on-build", {"Dockerfile": "FROM on-image\nRUN test -e /built\n"})
        assert "image" in final(ev) and final(ev)["layers"] == 3, final(ev)
        no_leftovers(a, c)
    finally:
        if a:
            stop_agent(a)
        reg.stop()


def docker_config(host, user, password):
    """A docker config object with one registry's credentials."""
    import base64

    return {"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}


def test_push_to_a_registry_and_pull_back(templates_dir, tmp_path):
    """A build FROM a registry image pushed to an htpasswd registry on loopback
    (POST /v1/images/push, `sandpit template push`): an OCI manifest of plain
    tar layers, pulled back under the pushed name into a sandbox that shows the
    built file; a wrong password is refused and writes no manifest."""
    reg = Registry(tmp_path / "reg", htpasswd=("pusher", "right-" + rand_suffix()))
    garbage = FakeRegistry(mode="garbage")
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps(docker_config(reg.host, reg.user, reg.password)))
    a = None
    try:
        base = make_layer(busybox_base([{"name": "etc/motd", "type": "file", "data": "base motd\n"}]))
        reg.client.push("it/base", "v1", Image([base], env=["PATH=/bin"]))
        a = start_agent("build-push", templates_dir,
                        extra_args=["--insecure-registry", reg.host, "--insecure-registry", garbage.host,
                                    "--registry-auth-file", str(auth_file)])
        c = a.client
        df = "FROM " + reg.host + "/it/base:v1\nRUN echo pushed-build > /built\nCMD [\"cat\", \"/built\"]\n"
        r, ev = build(c, "to-push", {"Dockerfile": df})
        assert r.status == 200 and "image" in final(ev), ev
        target = f"{reg.host}/team/app:v1"
        r = c.post("/v1/images/push", {"image": "localhost/to-push:latest", "to": target}, timeout=300)
        assert r.status == 200, r
        out = r.json()
        assert out["name"] == target and out["digest"].startswith("sha256:") and out["size"] > 0, out
        # The registry's view: the manifest by tag has the digest the push gave.
        st, h, body = reg.client.request("GET", "/v2/team/app/manifests/v1",
                                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert st == 200, (st, body)
        assert "sha256:" + hashlib.sha256(body).hexdigest() == out["digest"]
        m = json.loads(body)
        assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m
        assert [l["mediaType"] for l in m["layers"]] == ["application/vnd.oci.image.layer.v1.tar"] * 2, m
        st, _, top = reg.client.request("GET", f"/v2/team/app/blobs/{m['layers'][1]['digest']}")
        assert st == 200
        with tarfile.open(fileobj=io.BytesIO(top)) as t:
            assert t.extractfile("built").read() == b"pushed-build\n"
        # A second push finds every blob there and gives the same manifest.
        r = c.post("/v1/images/push", {"image": "localhost/to-push", "to": target}, timeout=300)
        assert r.status == 200 and r.json()["digest"] == out["digest"], r
        # Pulled back under the pushed name, a sandbox runs it.
        r = c.post("/v1/images/pull", {"image": target}, timeout=300)
        assert r.status == 200, r
        sb = c.create(template="image:" + target)
        assert c.sh(sb["id"], "cat /built; cat /etc/motd") == "pushed-build\nbase motd\n"
        assert c.delete(f"/v1/sandboxes/{sb['id']}").status == 204
        # A wrong password (the request's own credentials): refused, no manifest.
        bad = docker_config(reg.host, reg.user, "wrong")
        body = assert_error(c.post("/v1/images/push", {"image": "localhost/to-push", "to": f"{reg.host}/team/app:bad",
                                                       "auth": bad}, timeout=300), 403)
        assert "credentials refused" in body["message"] and "wrong" not in body["message"], body
        st, _, _ = reg.client.request("GET", "/v2/team/app/manifests/bad")
        assert st == 404
        # Bad requests.
        assert_error(c.post("/v1/images/push", {"image": "localhost/no-such-image", "to": target}), 404)
        assert_error(c.post("/v1/images/push", {"image": "localhost/to-push", "to": "UPPER//bad"}), 400)
        assert_error(c.post("/v1/images/push", {"image": "localhost/to-push"}), 400)
        # A registry answering an upload without a Location: 502.
        body = assert_error(c.post("/v1/images/push", {"image": "localhost/to-push",
                                                       "to": f"{garbage.host}/team/app:v1"}, timeout=300), 502)
        assert "Location" in body["message"], body
        # A build FROM host has no image under it: refused.
        r, ev = build(c, "on-host", {"Dockerfile": "FROM host\nRUN echo x > /x\n"})
        assert r.status == 200 and "image" in final(ev), ev
        body = assert_error(c.post("/v1/images/push", {"image": "localhost/on-host", "to": target}), 400)
        assert "directory template" in body["message"], body
        # The CLI.
        res = subprocess.run([str(CLI), "template", "push", "localhost/to-push", f"{reg.host}/team/app:cli"],
                             env={**os.environ, "SANDPIT_URL": "unix://" + str(a.socket)},
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0 and out["digest"] in res.stdout, res
        no_leftovers(a, c)
    finally:
        if a:
            stop_agent(a)
        garbage.stop()
        reg.stop()


def test_copy_cannot_leave_the_context(agent, client):
    tag = "it-build-escape-" + rand_suffix()
    for src, symlinks, why in [("../../etc/passwd", None, "outside the build context"),
                               ("link/passwd", {"link": "/etc"}, "goes through a link"),
                               ("up/passwd", {"up": "../../../../etc"}, "goes through a link")]:
        before = layers(agent)
        r, ev = build(client, tag, {"Dockerfile": f"FROM host\nCOPY {src} /x\n"}, symlinks=symlinks)
        assert r.status == 200, r
        assert why in final(ev).get("error", ""), (src, final(ev))
        assert layers(agent) == before
    # A link itself is copied as a link, never followed.
    r, ev = build(client, tag, {"Dockerfile": "FROM host\nCOPY link /x/link\n"}, symlinks={"link": "/etc/passwd"})
    assert "image" in final(ev), final(ev)
    sb = client.create(template=f"image:localhost/{tag}")
    assert client.sh(sb["id"], "readlink /x/link") == "/etc/passwd\n"
    assert client.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    no_leftovers(agent, client)
    assert client.delete(f"/v1/images?image=localhost/{tag}").status == 204


def test_arg_before_from(agent, client):
    df = "ARG BASE=no-such-base\nFROM ${BASE}\nARG BASE\nRUN echo \"base=[$BASE]\"\n"
    r, ev = build(client, "it-argfrom", {"Dockerfile": df})
    assert "no-such-base is neither a template nor an image" in final(ev)["error"], final(ev)
    r, ev = build(client, "it-argfrom", {"Dockerfile": df.replace("no-such-base", "host")})
    assert [e["data"] for e in ev if "stream" in e] == ["base=[host]\n"], ev
    r, ev = build(client, "it-argfrom", {"Dockerfile": df}, build_args=["BASE=host"])
    assert "image" in final(ev), final(ev)
    # The ARG before FROM is for FROM; declared again after it, it takes the
    # build arg, else the default before FROM (above): the same steps, so
    # this build is all from the cache.
    assert all(ends(ev).values()) and not [e for e in ev if "stream" in e], ev
    no_leftovers(agent, client)
    assert client.delete("/v1/images?image=localhost/it-argfrom").status == 204


def test_bad_requests(agent, client):
    # A Dockerfile error: 400 with its line, before anything runs.
    r, _ = build(client, "it-bad", {"Dockerfile": "FROM host\n\nFROBNICATE x\n"})
    assert_error(r, 400)
    assert "line 3: unknown instruction FROBNICATE" in r.json()["message"], r
    r, _ = build(client, "it-bad", {"Dockerfile": "FROM host\n"}, dockerfile="../Dockerfile")
    assert_error(r, 400)
    r, _ = build(client, "it-bad", {"Dockerfile": "FROM host\n"}, build_args=["no-equals"])
    assert_error(r, 400)
    r = client.post("/v1/templates/build?tag=x", raw=b"not a tar at all" * 64,
                    headers={"Content-Type": "application/x-tar"})
    assert_error(r, 400)
    r = client.post("/v1/templates/build", raw=context_tar({"Dockerfile": "FROM host\n"}),
                    headers={"Content-Type": "application/x-tar"})
    assert_error(r, 400)
    r, ev = build(client, "it-bad", {"Dockerfile": "FROM no-such-template-or-image\n"})
    assert "neither a template nor an image" in final(ev)["error"], final(ev)
    no_leftovers(agent, client)


def test_cli_build(agent, tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "skip").mkdir(parents=True)
    (ctx / "keep.txt").write_text("kept\n")
    (ctx / "skip" / "secret.txt").write_text("not sent\n")
    (ctx / ".dockerignore").write_text("# comment\nskip\n")
    df = tmp_path / "elsewhere.Dockerfile"  # outside the context
    df.write_text("FROM host\nARG WHO\nCOPY . /ctx/\nRUN echo \"hello $WHO\" > /ctx/hello\n")
    tag = "it-cli-" + rand_suffix()
    env = dict(os.environ, SANDPIT_URL=f"unix://{agent.socket}")
    p = subprocess.run([str(CLI), "template", "build", "-t", tag, "-f", str(df), "--build-arg", "WHO=cli",
                        str(ctx)], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p
    assert "Step 4/4 : RUN" in p.stdout and f"Built localhost/{tag}:latest" in p.stdout, p.stdout
    c = agent.client
    sb = c.create(template=f"image:localhost/{tag}")
    assert c.sh(sb["id"], "cat /ctx/keep.txt /ctx/hello; ls -A /ctx") == "kept\nhello cli\n.dockerignore\nhello\nkeep.txt\n"
    assert c.delete(f"/v1/sandboxes/{sb['id']}").status == 204

    df.write_text("FROM host\nRUN exit 7\n")
    p = subprocess.run([str(CLI), "template", "build", "-t", tag, "-f", str(df), str(ctx)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "exited with 7" in err[0], p.stderr
    no_leftovers(agent, c)
    assert c.delete(f"/v1/images?image=localhost/{tag}").status == 204


MULTI_STAGE = """\
ARG BASE=host
FROM ${BASE} AS Builder
RUN mkdir -p /out && echo built > /out/app && echo junk > /builder-only
FROM host AS unused
RUN echo should-not-run
FROM builder AS tested
RUN test -f /builder-only && echo tested > /out/tested
FROM ${BASE}
COPY --from=builder --chown=1000:1000 /out/app /app/app
COPY --from=0 /out/ /app/all/
RUN cat /app/app
"""


def streams(events):
    return [e["data"] for e in events if "stream" in e]


def test_multi_stage(agent, client):
    tag = "it-multi-" + rand_suffix()
    name = f"localhost/{tag}:latest"
    r, ev = build(client, tag, {"Dockerfile": MULTI_STAGE})
    assert r.status == 200 and "image" in final(ev), ev
    # Only what the last stage needs ran: not the unused stage, not "tested".
    assert streams(ev) == ["built\n"], ev
    announced = [e["line"] for e in ev if "instruction" in e]
    assert announced == [1, 2, 3, 8, 9, 10, 11], announced
    before = layers(agent)
    sb = client.create(template="image:" + name)
    sid = sb["id"]
    assert client.sh(sid, "cat /app/app; stat -c %u:%g /app/app; ls /app/all") == "built\n1000:1000\napp\n"
    # The result lacks what stage 1 made besides what was copied.
    assert client.sh(sid, "test ! -e /builder-only && test ! -e /out && echo clean") == "clean\n"
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204

    # Again: every stage from the cache, nothing runs, no new layer.
    r, ev = build(client, tag, {"Dockerfile": MULTI_STAGE})
    assert "image" in final(ev) and all(ends(ev).values()), ev
    assert streams(ev) == [] and layers(agent) == before

    # --target: that stage (and the one its FROM names) only.
    r, ev = build(client, tag + "-t", {"Dockerfile": MULTI_STAGE}, target="tested")
    assert "image" in final(ev), ev
    assert [e["line"] for e in ev if "instruction" in e] == [1, 2, 3, 6, 7], ev
    sb = client.create(template=f"image:localhost/{tag}-t")
    assert client.sh(sb["id"], "cat /out/tested /builder-only") == "tested\njunk\n"
    assert client.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    r, _ = build(client, tag, {"Dockerfile": MULTI_STAGE}, target="nope")
    assert_error(r, 400)
    assert "target stage nope is not in the Dockerfile" in r.json()["message"], r

    # A missing path in the stage: its name in the error, nothing left.
    r, ev = build(client, tag, {"Dockerfile": MULTI_STAGE.replace("/out/app /app/app", "/out/none /x")})
    assert "COPY source /out/none is not in stage builder" in final(ev)["error"], final(ev)
    no_leftovers(agent, client)
    for n in (name, f"localhost/{tag}-t:latest"):
        assert client.delete("/v1/images?image=" + urllib.parse.quote(n)).status == 204


def test_cli_target(agent, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM host AS one\nRUN echo one > /one\nFROM one AS two\nRUN echo two > /two\n")
    tag = "it-cli-target-" + rand_suffix()
    env = dict(os.environ, SANDPIT_URL=f"unix://{agent.socket}")
    p = subprocess.run([str(CLI), "template", "build", "-t", tag, "--target", "one", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p
    assert "Step 2/4 : RUN echo one" in p.stdout and "RUN echo two" not in p.stdout, p.stdout
    c = agent.client
    sb = c.create(template=f"image:localhost/{tag}")
    assert c.sh(sb["id"], "cat /one; test ! -e /two && echo no-two") == "one\nno-two\n"
    assert c.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    assert c.delete(f"/v1/images?image=localhost/{tag}").status == 204


def test_hard_links_stay_links(agent, client):
    tag = "it-hardlink-" + rand_suffix()
    df = "FROM host\nRUN mkdir /hl && echo same > /hl/a && ln /hl/a /hl/b && echo other > /hl/c\n"
    r, ev = build(client, tag, {"Dockerfile": df})
    assert "image" in final(ev), ev
    layer = agent.root / "images" / "layers" / final([e for e in ev if e.get("layer")])["layer"].split(":")[1]
    a, b, c = (os.stat(layer / "hl" / n) for n in "abc")
    assert a.st_ino == b.st_ino and a.st_nlink == 2 and c.st_ino != a.st_ino, (a, b, c)
    sb = client.create(template=f"image:localhost/{tag}")
    out = client.sh(sb["id"], "stat -c '%i %h' /hl/a /hl/b").splitlines()
    assert out[0] == out[1] and out[0].endswith(" 2"), out
    assert client.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    assert client.delete(f"/v1/images?image=localhost/{tag}").status == 204


@pytest.fixture(scope="module")
def fetch_agent(templates_dir, agent):
    """An agent that may fetch from 127.0.0.1 (--build-fetch-allow 127.0.0.1/32),
    where the tests' HTTP servers are; the session agent may not."""
    a = start_agent("build-fetch", templates_dir, extra_args=["--build-fetch-allow", "127.0.0.1/32"])
    yield a
    stop_agent(a)


def serve(www, host="127.0.0.1", redirect_to=None):
    """A loopback HTTP server (a thread) serving www, or answering every GET
    with a 302 to redirect_to + the path: (server, thread)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if redirect_to is None:
                return super().do_GET()
            self.send_response(302)
            self.send_header("Location", redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = http.server.ThreadingHTTPServer((host, 0), functools.partial(Quiet, directory=str(www)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, t


def stop_serving(srv, t):
    srv.shutdown()
    srv.server_close()
    t.join()


@pytest.fixture
def http_files(tmp_path):
    """A loopback HTTP server (a thread) serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    srv, t = serve(www)
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    stop_serving(srv, t)


def test_add_url(fetch_agent, http_files):
    agent, client = fetch_agent, fetch_agent.client
    www, base = http_files
    data = b"fetched by the agent\n"
    (www / "tool.txt").write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    tag = "it-addurl-" + rand_suffix()
    df = f"FROM host\nADD --checksum=sha256:{good} {base}/tool.txt /dl/\nADD {base}/tool.txt /dl/renamed\n"
    r, ev = build(client, tag, {"Dockerfile": df})
    assert "image" in final(ev), ev
    sb = client.create(template=f"image:localhost/{tag}")
    assert client.sh(sb["id"], "cat /dl/tool.txt; stat -c %a:%u /dl/tool.txt /dl/renamed") == \
        "fetched by the agent\n600:0\n600:0\n"
    assert client.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    before = layers(agent)
    # Again with the same content: cached.
    r, ev = build(client, tag, {"Dockerfile": df})
    assert "image" in final(ev) and all(ends(ev).values()), ev
    # Changed content behind the same URL: no longer the checksum.
    (www / "tool.txt").write_bytes(b"changed\n")
    r, ev = build(client, tag, {"Dockerfile": df})
    err = final(ev).get("error", "")
    assert "line 2, ADD" in err and "has checksum sha256:" + hashlib.sha256(b"changed\n").hexdigest() in err, ev
    assert layers(agent) == before
    no_leftovers(agent, client)
    # A 404, and a port nothing listens on: clear errors.
    r, ev = build(client, tag, {"Dockerfile": f"FROM host\nADD {base}/missing.txt /m\n"})
    assert "the server answered 404" in final(ev)["error"], final(ev)
    r, ev = build(client, tag, {"Dockerfile": "FROM host\nADD http://127.0.0.1:9/x /x\n"})
    assert "cannot fetch http://127.0.0.1:9/x" in final(ev)["error"], final(ev)
    r, ev = build(client, tag, {"Dockerfile": "FROM host\nADD ftp://127.0.0.1/x /x\n"})
    assert "ADD fetches http:// and https:// URLs only" in final(ev)["error"], final(ev)
    assert layers(agent) == before
    no_leftovers(agent, client)
    assert client.delete(f"/v1/images?image=localhost/{tag}").status == 204


REFUSED = "is a private/loopback/link-local address; the agent fetches only public addresses " \
          "unless --build-fetch-allow names it"


def test_add_url_refuses_private_addresses(agent, client, http_files):
    """Without --build-fetch-allow the agent connects to no loopback,
    link-local or private address, however the URL spells it."""
    www, base = http_files
    (www / "x").write_bytes(b"secret of the node\n")
    port = base.rsplit(":", 1)[1]
    tag = "it-addssrf-" + rand_suffix()
    before = layers(agent)
    for url, addr in [(f"{base}/x", "127.0.0.1"),
                      (f"http://[::1]:{port}/x", "::1"),
                      (f"http://[::ffff:127.0.0.1]:{port}/x", "127.0.0.1"),
                      (f"http://0x7f000001:{port}/x", "127.0.0.1"),
                      (f"http://2130706433:{port}/x", "127.0.0.1"),
                      (f"http://localhost:{port}/x", None)]:
        r, ev = build(client, tag, {"Dockerfile": f"FROM host\nADD {url} /dl/x\n"})
        err = final(ev).get("error", "")
        assert f"ADD {url}: " in err and REFUSED in err, (url, ev)
        if addr:
            assert f": {addr} is a" in err or f": ::ffff:{addr} is a" in err, (url, err)
    assert layers(agent) == before
    no_leftovers(agent, client)


def test_add_url_refuses_redirect_to_private(fetch_agent, tmp_path):
    """Allowed 127.0.0.1/32 only: a redirect from there to 127.0.0.2 (which
    answers too, on Linux's loopback) is refused at the redirect's connection."""
    agent, client = fetch_agent, fetch_agent.client
    www = tmp_path / "www"
    www.mkdir()
    (www / "x").write_bytes(b"behind the redirect\n")
    target, tt = serve(www, host="127.0.0.2")
    other = f"http://127.0.0.2:{target.server_address[1]}"
    front, ft = serve(www, redirect_to=other)
    try:
        # 127.0.0.2 does answer: fetched directly it is only the address that stops it.
        import urllib.request
        with urllib.request.urlopen(other + "/x", timeout=30) as resp:
            assert resp.read() == b"behind the redirect\n"
        tag = "it-addredir-" + rand_suffix()
        before = layers(agent)
        url = f"http://127.0.0.1:{front.server_address[1]}/x"
        r, ev = build(client, tag, {"Dockerfile": f"FROM host\nADD {url} /dl/x\n"})
        err = final(ev).get("error", "")
        assert f"ADD {url}: 127.0.0.2 {REFUSED}" in err, ev
        assert layers(agent) == before
        no_leftovers(agent, client)
    finally:
        stop_serving(front, ft)
        stop_serving(target, tt)


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, text in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(text))
    return buf.getvalue()


def test_add_archive(agent, client):
    tag = "it-addtar-" + rand_suffix()
    df = "FROM host\nADD app.tgz /opt/app/\nCOPY app.tgz /opt/kept.tgz\n"
    r, ev = build(client, tag, {"Dockerfile": df},
                  raw_files={"app.tgz": tar_bytes({"bin/tool": b"tool\n", "README": b"read me\n"})})
    assert "image" in final(ev), ev
    sb = client.create(template=f"image:localhost/{tag}")
    # ADD unpacks, COPY does not.
    assert client.sh(sb["id"], "cat /opt/app/bin/tool /opt/app/README; test -f /opt/kept.tgz && echo kept") == \
        "tool\nread me\nkept\n"
    assert client.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    before = layers(agent)
    r, ev = build(client, tag, {"Dockerfile": df}, raw_files={"app.tgz": tar_bytes({"../../escape": b"x\n"})})
    assert "ADD app.tgz" in final(ev).get("error", ""), ev
    assert layers(agent) == before
    no_leftovers(agent, client)
    assert client.delete(f"/v1/images?image=localhost/{tag}").status == 204


@pytest.mark.skipif(not shutil.which("docker-registry") or not Path("/usr/bin/busybox").exists(),
                    reason="docker-registry and busybox-static are needed (mk/deps.sh)")
def test_gc_between_steps_keeps_what_the_build_uses(templates_dir, tmp_path):
    """With --image-store-max every pull's GC removes what nothing holds: a
    pull while a later stage's RUN runs must not take the earlier stage's
    result that the next step copies from."""
    import threading

    reg = Registry(tmp_path / "reg")
    a = None
    try:
        reg.client.push("it/other", "v1", Image([make_layer(busybox_base([]))]))
        a = start_agent("build-gc", templates_dir,
                        extra_args=["--insecure-registry", reg.host, "--image-store-max", "1"])
        c = a.client
        df = ("FROM host AS a\nRUN echo from-a > /a.txt\n"
              "FROM host\nRUN mkfifo /go && timeout 120 sh -c 'read x < /go'\nCOPY --from=a /a.txt /a.txt\n")
        result = {}
        t = threading.Thread(target=lambda: result.update(ev=build(c, "it-build-gc", {"Dockerfile": df})[1]))
        t.start()
        try:
            wait_for(lambda: build_sandboxes(c), 120, what="the RUN's sandbox")
            sid = build_sandboxes(c)[0]
            wait_for(lambda: c.exec(sid, shell="test -p /go && echo yes").stdout == "yes\n", 60, what="the fifo")
            # The GC after this pull sees stage a's record and layer named by nothing
            # but the build.
            r = c.post("/v1/images/pull", {"image": f"{reg.host}/it/other:v1"}, timeout=300)
            assert r.status == 200, r
            c.sh(sid, "echo go > /go")
        finally:
            t.join(300)
        ev = result["ev"]
        assert "image" in final(ev), ev
        sb = c.create(template="image:localhost/it-build-gc")
        assert c.sh(sb["id"], "cat /a.txt") == "from-a\n"
        assert c.delete(f"/v1/sandboxes/{sb['id']}").status == 204
        no_leftovers(a, c)
    finally:
        if a:
            stop_agent(a)
        reg.stop()
