"""Images as templates (docs/images.md): pulls from real registries on
loopback (Debian's docker-registry: plain, htpasswd, TLS with a CA made
here) and a Python one (Bearer tokens, garbage), images built by the test,
sandboxes from them, and everything that must be refused."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import REPO, assert_error, rand_suffix, start_agent, stop_agent, wait_for
from oci_images import (FakeRegistry, Image, Registry, busybox_base, make_layer, sha256)

CLI = REPO / "build" / "bin" / "sandpit"
MAX_LAYER = 4 << 20

pytestmark = pytest.mark.skipif(not shutil.which("docker-registry") or not Path("/usr/bin/busybox").exists(),
                                reason="docker-registry and busybox-static are needed (mk/deps.sh)")


@pytest.fixture(scope="module")
def work():
    d = Path(tempfile.mkdtemp(prefix="sandpit-it-images-"))
    os.chmod(d, 0o755)
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)])


@pytest.fixture(scope="module")
def registries(work):
    regs = {"plain": Registry(work / "reg-plain"),
            "auth": Registry(work / "reg-auth", htpasswd=("puller", "right-" + rand_suffix())),
            "tls": Registry(work / "reg-tls", tls=True)}
    fake = FakeRegistry()
    regs["fake"] = fake
    yield regs
    for r in regs.values():
        r.stop()


def write_auth(path, entries):
    """A docker config.json: {host: (user, password)}."""
    import base64
    auths = {h: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for h, (u, p) in entries.items()}
    Path(path).write_text(json.dumps({"auths": auths}))


@pytest.fixture(scope="module")
def img_agent(templates_dir, registries, work):
    auth = work / "docker-config.json"
    write_auth(auth, {registries["auth"].host: (registries["auth"].user, registries["auth"].password),
                      "http://" + registries["fake"].host: (registries["fake"].user, registries["fake"].password)})
    args = ["--images-dir", str(work / "images"), "--registry-ca", str(registries["tls"].ca),
            "--registry-auth-file", str(auth), "--image-max-layer-size", str(MAX_LAYER)]
    for k in ("plain", "auth", "fake"):
        args += ["--insecure-registry", registries[k].host]
    a = start_agent("images", templates_dir, extra_args=args)
    a.images_dir = work / "images"
    a.auth_file = auth
    yield a
    stop_agent(a)


@pytest.fixture
def api(img_agent):
    return img_agent.client


def pull(api, ref, **kw):
    return api.post("/v1/images/pull", {"image": ref, **kw}, timeout=300)


def store_state(agent):
    """(layer dirs, image records, what is in tmp/<pid>/) of the agent's image store."""
    d = agent.images_dir
    return (sorted(p.name for p in (d / "layers").iterdir()), sorted(p.name for p in (d / "images").iterdir()),
            sorted(f"{sub.name}/{p.name}" for sub in (d / "tmp").iterdir() for p in sub.iterdir()))


def app_image(marker, base_extra=(), compression="zstd", **cfg):
    """Two layers: busybox (gzip) with /etc/motd and /old/{a,b}; then one
    that whites out /etc/motd, makes /old opaque and adds /app files."""
    base = make_layer(busybox_base([
        {"name": "etc/motd", "type": "file", "data": "hello from the base\n"},
        {"name": "old", "type": "dir"},
        {"name": "old/a", "type": "file", "data": "a"},
        {"name": "old/b", "type": "file", "data": "b"},
        *base_extra]))
    top = make_layer([
        {"name": "etc/.wh.motd", "type": "file"},
        {"name": "old/.wh..wh..opq", "type": "file"},
        {"name": "old/new", "type": "file", "data": "new"},
        {"name": "app", "type": "dir", "uid": 1000, "gid": 1000},
        {"name": "app/hello.txt", "type": "file", "data": f"hello {marker}\n", "uid": 1000, "gid": 1000},
        {"name": "dev/null-ish", "type": "chardev"},  # devices are skipped
    ], compression)
    cfg.setdefault("env", ["PATH=/bin", f"MARKER={marker}", "GREETING=from-image"])
    cfg.setdefault("workdir", "/app")
    cfg.setdefault("user", "1000")
    cfg.setdefault("cmd", ["sh", "-c", "echo started"])
    return Image([base, top], **cfg)


def exec_sh(api, sid, script):
    r = api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["/bin/sh", "-c", script]}, timeout=60)
    assert r.status == 200, r
    out, code = b"", None
    for line in r.body.splitlines():
        ev = json.loads(line)
        if ev.get("type") == "stdout":
            out += ev["data"].encode() if "data" in ev else b""
        elif ev.get("type") == "exit":
            code = ev["exit_code"]
    return code, out.decode()


# --------------------------------------------------------------------------- pulls


def test_pull_by_tag_and_by_digest(api, registries, img_agent):
    reg = registries["plain"]
    img = app_image("tagdigest")
    reg.client.push("it/app", "v1", img)
    r = pull(api, f"{reg.host}/it/app:v1")
    assert r.status == 200, r
    o = r.json()
    assert o["name"] == f"{reg.host}/it/app:v1"
    assert o["digest"] == img.digest and o["manifest_digest"] == img.digest
    assert o["layers"] == [sha256(b) for b, _, _ in img.layers]
    assert o["config"]["working_dir"] == "/app" and o["config"]["user"] == "1000"
    assert o["config"]["cmd"] == ["sh", "-c", "echo started"]
    r = pull(api, f"{reg.host}/it/app@{img.digest}")
    assert r.status == 200, r
    assert r.json()["digest"] == img.digest
    names = [i["name"] for i in api.get("/v1/images").json()["images"]]
    assert f"{reg.host}/it/app:v1" in names and f"{reg.host}/it/app@{img.digest}" in names
    layers, _, tmp = store_state(img_agent)
    assert all(d.split(":")[1] in layers for d in o["layers"]), (o["layers"], layers)
    assert tmp == []


def test_sandbox_from_image_sees_files_env_workdir_user(api, registries):
    reg = registries["plain"]
    img = app_image("sbx")
    reg.client.push("it/sbx", "latest", img)
    r = api.post("/v1/sandboxes", {"image": f"{reg.host}/it/sbx", "env": {"GREETING": "override"}})
    assert r.status == 201, r
    sb = r.json()
    api.created.append(sb["id"])
    assert sb["template"] == f"image:{reg.host}/it/sbx:latest"
    assert sb["user"] == "1000" and sb["cwd"] == "/app"
    code, out = exec_sh(api, sb["id"], 'id -u; pwd; echo "$MARKER $GREETING"; cat hello.txt; '
                                       'test -e /etc/motd || echo no-motd; ls /old; '
                                       'test -e /dev/null-ish || echo no-device')
    assert code == 0, out
    assert out.split("\n")[:7] == ["1000", "/app", "sbx override", "hello sbx", "no-motd", "new", "no-device"], out
    # The image's layers are read-only below the sandbox's own upper layer.
    code, out = exec_sh(api, sb["id"], "echo changed > /app/hello.txt && cat /app/hello.txt")
    assert code == 0 and out == "changed\n"
    assert api.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    r = api.post("/v1/sandboxes", {"template": f"image:{reg.host}/it/sbx:latest", "user": "root"})
    assert r.status == 201, r
    api.created.append(r.json()["id"])
    code, out = exec_sh(api, r.json()["id"], "id -u; cat /app/hello.txt")
    assert (code, out) == (0, "0\nhello sbx\n")


def test_warm_pool_of_an_image_template(api, registries, img_agent):
    """An image template's warm pool (docs/agent-api.md#warm-pools): the PUT
    pulls the image and names it as a cold create does (":latest" added); a
    create by the shorter reference claims from it and keeps the image's
    user, working directory and env where the caller gave none; the caller's
    own win. Removing the pool leaves nothing."""
    reg = registries["plain"]
    img = app_image("pooled")
    reg.client.push("it/pooled", "latest", img)
    shape = {"cpu": 0.25, "memory": 128 << 20}
    r = api.request("PUT", "/v1/pools/img", {"template": f"image:{reg.host}/it/pooled", "size": 2,
                                             "kernel": False, **shape}, timeout=300)
    assert r.status == 200, r
    assert r.json()["template"] == f"image:{reg.host}/it/pooled:latest"
    ids = []
    try:
        wait_for(lambda: api.get("/v1/pools/img").json()["ready"] == 2, 60, what="two pooled sandboxes")
        r = api.post("/v1/sandboxes", {"image": f"{reg.host}/it/pooled", "env": {"GREETING": "override"}, **shape})
        assert r.status == 201, r
        sb = r.json()
        ids.append(sb["id"])
        api.created.append(sb["id"])
        assert api.get("/v1/pools/img").json()["claims"] == 1
        assert sb["template"] == f"image:{reg.host}/it/pooled:latest"
        assert sb["user"] == "1000" and sb["cwd"] == "/app", sb
        code, out = exec_sh(api, sb["id"], 'id -u; pwd; echo "$MARKER $GREETING"; cat hello.txt')
        assert (code, out) == (0, "1000\n/app\npooled override\nhello pooled\n")
        # the caller's user wins over the image's
        r = api.post("/v1/sandboxes", {"template": f"image:{reg.host}/it/pooled:latest", "user": "root", **shape})
        assert r.status == 201, r
        ids.append(r.json()["id"])
        api.created.append(r.json()["id"])
        assert api.get("/v1/pools/img").json()["claims"] == 2
        assert exec_sh(api, r.json()["id"], "id -u; pwd") == (0, "0\n/app\n")
    finally:
        for sid in ids:
            api.delete(f"/v1/sandboxes/{sid}")
        assert api.delete("/v1/pools/img").status == 204
    # its waiting sandboxes go in the background
    wait_for(lambda: img_agent.leftovers(zombies=False) == [], 60, what="the pool's sandboxes to be gone")


def test_warm_pool_of_an_unknown_image_is_refused(api, registries):
    r = api.request("PUT", "/v1/pools/img", {"template": f"image:{registries['plain'].host}/it/nothing:v9",
                                             "size": 1}, timeout=300)
    assert r.status in (404, 502), r
    assert_error(api.get("/v1/pools/img"), 404)


def test_layers_are_shared_between_images(api, registries, img_agent):
    reg = registries["plain"]
    a, b = app_image("share-a"), app_image("share-b")
    assert a.layers[0][0] == b.layers[0][0] and a.layers[1][0] != b.layers[1][0]
    reg.client.push("it/share-a", "v1", a)
    reg.client.push("it/share-b", "v1", b)
    assert pull(api, f"{reg.host}/it/share-a:v1").status == 200
    base_dir = img_agent.images_dir / "layers" / sha256(a.layers[0][0]).split(":")[1]
    ino = base_dir.stat().st_ino
    assert pull(api, f"{reg.host}/it/share-b:v1").status == 200
    assert base_dir.stat().st_ino == ino  # unpacked once, not again
    layers, _, _ = store_state(img_agent)
    for img in (a, b):
        for blob, _, _ in img.layers:
            assert sha256(blob).split(":")[1] in layers


def test_index_picks_linux_amd64_and_docker_schema2(api, registries):
    reg = registries["plain"]
    amd = app_image("amd64", docker=True, compression="docker")
    arm = app_image("arm64", arch="arm64")
    idx_digest = reg.client.push_index("it/multi", "v1", {"arm64": arm, "amd64": amd})
    r = pull(api, f"{reg.host}/it/multi:v1")
    assert r.status == 200, r
    o = r.json()
    assert o["digest"] == idx_digest and o["manifest_digest"] == amd.digest
    assert o["layers"] == [sha256(b) for b, _, _ in amd.layers]


def test_unknown_image_and_bad_reference(api, registries, img_agent):
    reg = registries["plain"]
    before = store_state(img_agent)
    body = assert_error(pull(api, f"{reg.host}/it/nothing:here"), 404)
    assert "MANIFEST_UNKNOWN" in body["message"] or "NAME_UNKNOWN" in body["message"], body
    assert_error(pull(api, "Bad Ref!!"), 400)
    assert_error(pull(api, "noregistry:tag"), 400)  # no --default-registry
    assert_error(api.post("/v1/images/pull", {"ref": "x"}), 400)
    body = assert_error(api.post("/v1/sandboxes", {"image": f"{reg.host}/it/nothing:here"}), 404)
    assert "MANIFEST_UNKNOWN" in body["message"] or "NAME_UNKNOWN" in body["message"]
    assert store_state(img_agent) == before


# --------------------------------------------------------------------------- refusals


def test_tampered_blob_is_refused_and_nothing_stays(api, registries, img_agent):
    reg = registries["plain"]
    img = app_image("tamper-" + rand_suffix())
    reg.client.push("it/tamper", "v1", img)
    top = img.layers[1][0]
    p = reg.blob_path(sha256(top))
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    p.write_bytes(bytes(data))
    before = store_state(img_agent)
    body = assert_error(pull(api, f"{reg.host}/it/tamper:v1"), 502)
    assert "digest" in body["message"] and sha256(top) in body["message"], body
    layers, records, tmp = store_state(img_agent)
    assert sha256(top).split(":")[1] not in layers
    assert records == before[1] and tmp == []


MALICIOUS = {
    "dotdot": [{"name": "../../escaped-{t}", "type": "file", "data": "x"}],
    "absolute": [{"name": "/tmp/escaped-{t}", "type": "file", "data": "x"}],
    "symlink-out": [{"name": "evil", "type": "symlink", "target": "/tmp"},
                    {"name": "evil/escaped-{t}", "type": "file", "data": "x"}],
    "symlink-up": [{"name": "up", "type": "symlink", "target": "../../../../../../tmp"},
                   {"name": "up/escaped-{t}", "type": "file", "data": "x"}],
    "hardlink-out": [{"name": "hl-{t}", "type": "hardlink", "target": "../../../../../../etc/hostname"}],
    "hardlink-abs": [{"name": "hl-{t}", "type": "hardlink", "target": "/etc/hostname"}],
    "hardlink-via-symlink": [{"name": "etcl", "type": "symlink", "target": "/etc"},
                             {"name": "hl-{t}", "type": "hardlink", "target": "etcl/hostname"}],
}


@pytest.mark.parametrize("kind", sorted(MALICIOUS))
def test_malicious_layer_never_writes_outside(api, registries, img_agent, kind):
    reg = registries["plain"]
    t = rand_suffix()
    entries = [dict(e, name=e["name"].format(t=t)) for e in MALICIOUS[kind]]
    layer = make_layer([{"name": "ok", "type": "file", "data": "fine"}] + entries)
    img = Image([layer], env=["PATH=/bin"])
    reg.client.push("it/evil", kind, img)
    before = store_state(img_agent)
    hostname_links = os.stat("/etc/hostname").st_nlink if os.path.exists("/etc/hostname") else None
    body = assert_error(pull(api, f"{reg.host}/it/evil:{kind}"), 502)
    assert "layer refused" in body["message"], body
    assert not Path(f"/tmp/escaped-{t}").exists()
    for p in img_agent.images_dir.rglob(f"escaped-{t}"):
        raise AssertionError(f"{p} was written")
    if hostname_links is not None:
        assert os.stat("/etc/hostname").st_nlink == hostname_links
    assert store_state(img_agent) == before


def test_layer_past_the_size_limit(api, registries, img_agent):
    reg = registries["plain"]
    # A few KiB of gzip that unpack to more than the limit: refused while unpacking.
    bomb = make_layer([{"name": "zeros", "type": "file", "data": b"\0" * (MAX_LAYER + 1)}])
    assert len(bomb[0]) < MAX_LAYER
    reg.client.push("it/big", "bomb", Image([bomb]))
    before = store_state(img_agent)
    body = assert_error(pull(api, f"{reg.host}/it/big:bomb"), 413)
    assert "size limit" in body["message"], body
    # A blob that is itself past the limit: refused before downloading.
    big = make_layer([{"name": "noise", "type": "file", "data": os.urandom(MAX_LAYER + 1)}], "none")
    reg.client.push("it/big", "blob", Image([big]))
    body = assert_error(pull(api, f"{reg.host}/it/big:blob"), 413)
    assert "limit" in body["message"], body
    assert store_state(img_agent) == before


def test_htpasswd_registry_with_right_and_wrong_credentials(api, registries, img_agent):
    reg = registries["auth"]
    img = app_image("auth")
    reg.client.push("it/private", "v1", img)
    r = pull(api, f"{reg.host}/it/private:v1")
    assert r.status == 200, r
    good = img_agent.auth_file.read_text()
    try:
        write_auth(img_agent.auth_file, {reg.host: (reg.user, "wrong")})
        body = assert_error(pull(api, f"{reg.host}/it/private:v1"), 403)
        assert "credentials refused" in body["message"], body
        write_auth(img_agent.auth_file, {})
        body = assert_error(pull(api, f"{reg.host}/it/private:v1"), 403)
        assert "credentials" in body["message"], body
    finally:
        img_agent.auth_file.write_text(good)


def docker_config(entries):
    """The text write_auth() writes, as an object: {host: (user, password)}."""
    import base64
    return {"auths": {h: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for h, (u, p) in entries.items()}}


def test_pull_with_the_callers_credentials(api, registries, img_agent):
    """A pull's own "auth" replaces the node's credentials for it; a copy on the
    node that was not pulled anonymously is given only to a caller whose
    credentials the registry accepts for it ("verify"); an anonymous one to
    anyone. The credentials are never in the agent's log."""
    reg, plain = registries["auth"], registries["plain"]
    wrong = "wrong-" + rand_suffix()
    img = app_image("percall")
    reg.client.push("it/percall", "v1", img)
    ref = f"{reg.host}/it/percall:v1"
    log0 = img_agent.log_size()
    before = store_state(img_agent)
    # wrong credentials of its own: refused, though the node's would do; nothing stays
    body = assert_error(pull(api, ref, auth=docker_config({reg.host: (reg.user, wrong)})), 403)
    assert "credentials refused" in body["message"], body
    assert store_state(img_agent) == before
    # the right ones: pulled, not public
    r = pull(api, ref, auth=docker_config({reg.host: (reg.user, reg.password)}))
    assert r.status == 200, r
    assert r.json()["digest"] == img.digest and r.json()["public"] is False
    # the node's copy, asked for without a download: wrong or no credentials are refused
    for auth in (docker_config({reg.host: (reg.user, wrong)}), {"auths": {}}):
        body = assert_error(pull(api, ref, refresh=False, auth=auth), 403)
        assert "the node has the image, but the registry does not give it" in body["message"], body
    # the right ones, or the node's own with verify: the copy
    r = pull(api, ref, refresh=False, auth=docker_config({reg.host: (reg.user, reg.password)}))
    assert r.status == 200 and r.json()["digest"] == img.digest, r
    assert pull(api, ref, refresh=False, verify=True).status == 200
    # an anonymous pull is anyone's
    pub = app_image("percall-pub")
    plain.client.push("it/percall", "v1", pub)
    pref = f"{plain.host}/it/percall:v1"
    r = pull(api, pref)
    assert r.status == 200 and r.json()["public"] is True, r
    r = pull(api, pref, refresh=False, auth={"auths": {}})
    assert r.status == 200 and r.json()["digest"] == pub.digest, r
    # a malformed body is refused
    assert_error(pull(api, ref, auth="user:pw"), 400)
    assert_error(pull(api, ref, verify="yes"), 400)
    log = img_agent.log_tail(lines=100000, since=log0)
    assert reg.password not in log and wrong not in log
    for r_ in (ref, pref):
        assert api.delete(f"/v1/images?image={r_}").status == 204


def test_tls_registry_with_the_configured_ca(api, registries):
    reg = registries["tls"]
    img = app_image("tls")
    reg.client.push("it/tls", "v1", img)
    r = pull(api, f"{reg.host}/it/tls:v1")
    assert r.status == 200, r
    assert r.json()["digest"] == img.digest


def test_bearer_token_service(api, registries):
    fake = registries["fake"]
    img = app_image("bearer")
    fake.add("team/bearer", "v1", img)
    n = len(fake.token_requests)
    r = pull(api, f"{fake.host}/team/bearer:v1")
    assert r.status == 200, r
    assert r.json()["digest"] == img.digest
    assert len(fake.token_requests) > n and "scope=repository%3Ax%3Apull" in fake.token_requests[-1]
    old = fake.password
    fake.password = "changed"
    try:
        body = assert_error(pull(api, f"{fake.host}/team/bearer:v1"), 403)
        assert "refused the credentials" in body["message"], body
    finally:
        fake.password = old


def test_garbage_answers(api, registries, img_agent):
    fake = registries["fake"]
    before = store_state(img_agent)
    fake.mode = "garbage"
    try:
        body = assert_error(pull(api, f"{fake.host}/team/garbage:v1"), 502)
        assert "malformed" in body["message"], body
    finally:
        fake.mode = "bearer"
    assert store_state(img_agent) == before


def test_concurrent_pulls_share_one_download(api, registries):
    fake = registries["fake"]
    m = "concurrent-" + rand_suffix()
    img = app_image(m, base_extra=[{"name": "etc/unique", "type": "file", "data": m}])
    fake.add("team/conc", "v1", img)
    fake.blob_gets = {}
    results = []

    def one():
        results.append(pull(api, f"{fake.host}/team/conc:v1", refresh=False))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in results] == [200] * 4, results
    assert {r.json()["digest"] for r in results} == {img.digest}
    for blob, _, _ in img.layers:
        assert fake.blob_gets.get(sha256(blob)) == 1, fake.blob_gets


def test_remove_image_keeps_shared_layers_and_refuses_in_use(api, registries, img_agent):
    reg = registries["plain"]
    a, b = app_image("rm-a-" + rand_suffix()), app_image("rm-b-" + rand_suffix())
    reg.client.push("it/rm-a", "v1", a)
    reg.client.push("it/rm-b", "v1", b)
    assert pull(api, f"{reg.host}/it/rm-a:v1").status == 200
    assert pull(api, f"{reg.host}/it/rm-b:v1").status == 200
    r = api.post("/v1/sandboxes", {"image": f"{reg.host}/it/rm-a:v1"})
    assert r.status == 201, r
    sid = r.json()["id"]
    api.created.append(sid)
    assert_error(api.delete(f"/v1/images?image={reg.host}/it/rm-a:v1"), 409)
    assert api.delete(f"/v1/sandboxes/{sid}").status == 204
    assert api.delete(f"/v1/images?image={reg.host}/it/rm-a:v1").status == 204
    assert_error(api.delete(f"/v1/images?image={reg.host}/it/rm-a:v1"), 404)
    layers, _, _ = store_state(img_agent)
    assert sha256(a.layers[1][0]).split(":")[1] not in layers
    assert sha256(a.layers[0][0]).split(":")[1] in layers  # b still has the base
    names = [i["name"] for i in api.get("/v1/images").json()["images"]]
    assert f"{reg.host}/it/rm-a:v1" not in names and f"{reg.host}/it/rm-b:v1" in names


# --------------------------------------------------------------------------- CLI


def cli(agent, *args):
    return subprocess.run([str(CLI), "--server", f"unix://{agent.socket}", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_template_pull_and_create_image(img_agent, registries):
    reg = registries["plain"]
    img = app_image("cli")
    reg.client.push("it/cli", "v1", img)
    r = cli(img_agent, "template", "pull", f"{reg.host}/it/cli:v1")
    assert r.returncode == 0, r
    assert img.digest in r.stdout
    r = cli(img_agent, "template", "images")
    assert r.returncode == 0 and f"{reg.host}/it/cli:v1" in r.stdout, r
    r = cli(img_agent, "create", "--image", f"{reg.host}/it/cli:v1")
    assert r.returncode == 0, r
    sid = r.stdout.strip()
    img_agent.client.created.append(sid)
    r = cli(img_agent, "exec", sid, "--", "cat", "hello.txt")
    assert (r.returncode, r.stdout) == (0, "hello cli\n"), r
    r = cli(img_agent, "template", "pull", f"{reg.host}/it/cli:nope")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r
    r = cli(img_agent, "template", "rm", f"{reg.host}/it/cli:v1")
    assert r.returncode != 0 and "in use" in r.stderr, r


def test_image_sandbox_survives_an_agent_restart(api, registries, img_agent):
    """state.json keeps the image's user, cwd and env: the next agent adopts the sandbox."""
    reg = registries["plain"]
    img = app_image("restart")
    reg.client.push("it/restart", "v1", img)
    r = api.post("/v1/sandboxes", {"image": f"{reg.host}/it/restart:v1"})
    assert r.status == 201, r
    sid = r.json()["id"]
    api.created.append(sid)
    # What a killed agent's pull left in tmp/<pid> goes; a live agent's stays.
    dead = subprocess.Popen(["true"])
    dead.wait()
    tmp = img_agent.images_dir / "tmp"
    (tmp / str(dead.pid) / "half.XXXXXX").mkdir(parents=True)
    (tmp / str(os.getpid())).mkdir()
    img_agent.restart()
    assert not (tmp / str(dead.pid)).exists()
    assert (tmp / str(os.getpid())).is_dir()
    (tmp / str(os.getpid())).rmdir()
    sb = api.get(f"/v1/sandboxes/{sid}")
    assert sb.status == 200 and sb.json()["state"] == "running", sb
    assert sb.json()["template"] == f"image:{reg.host}/it/restart:v1" and sb.json()["cwd"] == "/app"
    code, out = exec_sh(api, sid, 'id -u; pwd; echo "$MARKER"')
    assert (code, out) == (0, "1000\n/app\nrestart\n")
    assert_error(api.delete(f"/v1/images?image={reg.host}/it/restart:v1"), 409)


def test_create_fields_image_cwd_and_named_user(api, registries):
    reg = registries["plain"]
    assert_error(api.post("/v1/sandboxes", {"image": "r.io/a", "template": "host"}), 400)
    assert_error(api.post("/v1/sandboxes", {"template": "host", "image": "r.io/a"}), 400)
    assert_error(api.post("/v1/sandboxes", {"template": "host", "cwd": "relative"}), 400)
    img = app_image("named", user="app", workdir=None, env=["PATH=/bin"])
    reg.client.push("it/named", "v1", img)
    r = api.post("/v1/sandboxes", {"image": f"{reg.host}/it/named:v1"})
    assert r.status == 201, r
    api.created.append(r.json()["id"])
    assert r.json()["user"] == "app" and "cwd" not in r.json()
    code, out = exec_sh(api, r.json()["id"], "id -u; pwd")
    assert (code, out) == (0, "1000\n/home/app\n")
    # cwd on a directory template too.
    r = api.post("/v1/sandboxes", {"template": "host", "cwd": "/tmp"})
    assert r.status == 201, r
    api.created.append(r.json()["id"])
    code, out = exec_sh(api, r.json()["id"], "pwd")
    assert (code, out) == (0, "/tmp\n")


# --------------------------------------------------------------------------- garbage collection


def unique_image(tag):
    """An image whose layers no other image has (about 2 MiB on disk: busybox)."""
    return app_image(tag, base_extra=[{"name": "etc/unique", "type": "file", "data": tag + rand_suffix()}])


def test_gc_keeps_layers_in_use_and_removes_the_oldest(templates_dir, registries, work):
    reg = registries["plain"]
    bb = Path("/usr/bin/busybox").stat().st_size
    images_dir = work / f"images-gc-{rand_suffix()}"
    # Room for one image and a half: every pull past it makes the GC act.
    a = start_agent("images-gc", templates_dir,
                    extra_args=["--images-dir", str(images_dir), "--insecure-registry", reg.host,
                                "--image-store-max", str(int(bb * 1.5))])
    api = a.client
    layer_dirs = lambda: {p.name for p in (images_dir / "layers").iterdir()}  # noqa: E731
    hexes = lambda img: {sha256(b).split(":")[1] for b, _, _ in img.layers}  # noqa: E731
    try:
        x, y, z = unique_image("gc-x"), unique_image("gc-y"), unique_image("gc-z")
        for name, img in (("x", x), ("y", y), ("z", z)):
            reg.client.push(f"it/gc-{name}", "v1", img)
        assert pull(api, f"{reg.host}/it/gc-x:v1").status == 200
        r = api.post("/v1/sandboxes", {"image": f"{reg.host}/it/gc-x:v1"})
        assert r.status == 201, r
        sid = r.json()["id"]
        api.created.append(sid)
        # Over the budget, but x is in use and y was just pulled: both stay.
        assert pull(api, f"{reg.host}/it/gc-y:v1").status == 200
        assert hexes(x) | hexes(y) <= layer_dirs()
        code, out = exec_sh(api, sid, "cat hello.txt")
        assert (code, out) == (0, "hello gc-x\n")
        assert api.delete(f"/v1/sandboxes/{sid}").status == 204
        # Its overlay is unmounted in the background teardown; until then x is in use.
        a.settle()
        # Now x (oldest) and then y go for z.
        assert pull(api, f"{reg.host}/it/gc-z:v1").status == 200
        names = [i["name"] for i in api.get("/v1/images").json()["images"]]
        assert names == [f"{reg.host}/it/gc-z:v1"], names
        assert layer_dirs() == hexes(z)

        # A tag moved to a new digest: the old layers stay while a sandbox has them.
        w1 = unique_image("gc-w1")
        reg.client.push("it/gc-w", "v1", w1)
        r = api.post("/v1/sandboxes", {"image": f"{reg.host}/it/gc-w:v1"})
        assert r.status == 201, r
        sid = r.json()["id"]
        api.created.append(sid)
        w2 = unique_image("gc-w2")
        reg.client.push("it/gc-w", "v1", w2)
        assert pull(api, f"{reg.host}/it/gc-w:v1").json()["digest"] == w2.digest
        assert hexes(w1) <= layer_dirs()  # no record has them; the sandbox does
        code, out = exec_sh(api, sid, "cat hello.txt")
        assert (code, out) == (0, "hello gc-w1\n")
        assert api.delete(f"/v1/sandboxes/{sid}").status == 204
        a.settle()
        assert pull(api, f"{reg.host}/it/gc-z:v1").status == 200
        assert not (hexes(w1) & layer_dirs())
        assert hexes(z) <= layer_dirs()
    finally:
        stop_agent(a)
