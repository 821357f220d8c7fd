"""A template's start command (docs/templates.md): run by init as a background
process when a sandbox starts; the create returns only once it is up (started,
or its wait_for_port answering inside the sandbox), else fails and leaves
nothing (the leak check)."""

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import assert_error, start_agent, stop_agent, wait_for
from oci_images import Image, Registry, busybox_base, make_layer
from test_pool import FLAG, SHAPE, pool_agent  # noqa: F401  (the fixture)

# Listens on PORT (argv[1]) once it has printed its env var; python3 is the
# host template's (/usr bound from the host).
SERVER = ("import os, socket, sys\n"
          "print('start-cmd-up', os.environ.get('GREETING', '-'), flush=True)\n"
          "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)\n"
          "while True:\n"
          "    c, _ = s.accept(); c.sendall(b'hello from the start command\\n'); c.close()\n")

# One connect, no retry: fails unless something listens already.
CONNECT = ("import socket, sys\n"
           "c = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
           "print(c.recv(100).decode().strip())\n")


def connect_once(client, sid, port):
    r = client.exec(sid, cmd=["python3", "-c", CONNECT, str(port)])
    assert r.status == 200 and r.exit_code == 0, r
    return r.stdout.strip()


def start_proc(client, sid):
    procs = [p for p in client.processes(sid) if p.get("tag") == "start_cmd"]
    assert len(procs) == 1, client.processes(sid)
    return procs[0]


def create_with(client, start_cmd, **spec):
    body = {"template": "host", "start_cmd": start_cmd}
    body.update(spec)
    return client.post("/v1/sandboxes", body)


def test_port_answers_before_the_create_returns(client):
    r = create_with(client, {"command": ["python3", "-c", SERVER, "8123"], "wait_for_port": 8123,
                             "ready_timeout": 30},
                    env={"GREETING": "hi-from-env"}, secret_env={"TOKEN": "s3cret"})
    assert r.status == 201, r
    sid = r.json()["id"]
    # The first exec after the create connects, with no retry.
    assert connect_once(client, sid, 8123) == "hello from the start command"
    p = start_proc(client, sid)
    assert p["running"] and p["background"] and p["cmd"][0] == "python3", p
    # Its output, from its start, with the request's env.
    s = client.stream("GET", f"/v1/sandboxes/{sid}/processes/{p['pid']}/stream", timeout=30)
    with s:
        got = b""
        for ev in s:
            if ev["type"] == "stdout":
                got += ev.get("data", "").encode()
            if b"\n" in got:
                break
    assert got.decode().startswith("start-cmd-up hi-from-env"), got
    assert client.delete(f"/v1/sandboxes/{sid}").status in (200, 204)


def test_shell_string_sees_env_and_secrets(client):
    script = ("echo \"$GREETING:$TOKEN\" > /tmp/seen; "
              f"exec python3 -c {shlex.quote(SERVER)} 8124")
    r = create_with(client, {"command": script, "wait_for_port": 8124},
                    env={"GREETING": "shell-env"}, secret_env={"TOKEN": "tok-value"})
    assert r.status == 201, r
    sid = r.json()["id"]
    # (the secret's value is masked in output: compare inside)
    assert client.sh(sid, 'test "$(cat /tmp/seen)" = shell-env:tok-value && echo same').strip() == "same"
    assert start_proc(client, sid)["cmd"][:2] == ["/bin/sh", "-c"]


def test_no_port_is_up_once_started(client):
    r = create_with(client, {"command": ["sh", "-c", "echo started > /tmp/started; exec sleep 600"]})
    assert r.status == 201, r
    sid = r.json()["id"]
    assert start_proc(client, sid)["running"]


def test_port_never_opened_times_out_and_leaves_nothing(client, agent):
    r = create_with(client, {"command": ["sh", "-c", "echo waiting-forever; exec sleep 600"],
                             "wait_for_port": 8125, "ready_timeout": 2}, id="sc-timeout")
    assert_error(r, 504)
    msg = r.json()["message"]
    assert "did not open port 8125 within 2.0 s" in msg and "waiting-forever" in msg, msg
    assert client.get("/v1/sandboxes/sc-timeout").status == 404
    assert "sc-timeout" not in client.list_ids()


def test_exit_at_once_fails_fast_with_its_code(client):
    r = create_with(client, {"command": ["sh", "-c", "echo boom >&2; exit 7"], "wait_for_port": 8126,
                             "ready_timeout": 600}, id="sc-exit")
    assert_error(r, 400)
    msg = r.json()["message"]
    assert "exited with code 7" in msg and "boom" in msg, msg
    assert client.get("/v1/sandboxes/sc-exit").status == 404


def test_command_not_there_is_the_requests_fault(client):
    r = create_with(client, {"command": ["/no/such/binary"], "wait_for_port": 8127}, id="sc-enoent")
    assert_error(r, 400)
    assert "start command" in r.json()["message"]
    assert client.get("/v1/sandboxes/sc-enoent").status == 404


@pytest.mark.parametrize("bad", [
    {},
    {"command": []},
    {"command": ""},
    {"command": ["x"], "from_image": True},
    {"command": ["x"], "wait_for_port": 0},
    {"command": ["x"], "wait_for_port": 70000},
    {"command": ["x"], "ready_timeout": 0},
    {"command": ["x"], "cwd": "relative"},
    {"command": ["x"], "bogus": 1},
    "sleep 1",
])
def test_bad_start_cmd_is_refused(client, bad):
    assert_error(create_with(client, bad), 400)


def test_from_image_on_a_directory_template_is_refused(client):
    r = create_with(client, {"from_image": True})
    assert_error(r, 400)
    assert "not an image" in r.json()["message"]


@pytest.fixture
def start_template(templates_dir, unique):
    """A directory template `host` plus a start_cmd in its template.json."""
    name = f"sc-{unique}"
    d = templates_dir / name
    d.mkdir()
    subprocess.run(["cp", "-a", str(templates_dir / "host" / "rootfs"), str(d / "rootfs")], check=True)
    doc = json.loads((templates_dir / "host" / "template.json").read_text())
    doc["name"] = name
    doc["start_cmd"] = {"command": ["python3", "-c", SERVER, "8128"], "wait_for_port": 8128,
                        "ready_timeout": 30}
    (d / "template.json").write_text(json.dumps(doc))
    yield name
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=True)


def test_template_json_start_cmd(client, start_template):
    r = client.post("/v1/sandboxes", {"template": start_template, "env": {"GREETING": "tpl"}})
    assert r.status == 201, r
    sid = r.json()["id"]
    assert connect_once(client, sid, 8128) == "hello from the start command"
    start_proc(client, sid)
    # The request's own start command replaces the template's.
    r = create_with(client, {"command": ["sh", "-c", "exec sleep 600"]}, template=start_template)
    assert r.status == 201, r
    assert start_proc(client, r.json()["id"])["cmd"] == ["sh", "-c", "exec sleep 600"]


# --------------------------------------------------------------------------- warm pools


def test_warm_pools_never_hold_a_start_command(pool_agent, start_template):
    """A create with a start command does not claim a pooled sandbox (the
    command must run with its env): it is cold, and the pool keeps its own.
    A pool of a template whose template.json has one makes none, says why,
    and creates of that template are cold."""
    pa = pool_agent(FLAG)
    before = pa.wait_ready(2)["sandboxes"]
    claims = pa.metric("sandpit_pool_claims_total")
    r = pa.c.post("/v1/sandboxes", {**SHAPE, "env": {"GREETING": "cold"},
                                    "start_cmd": {"command": ["python3", "-c", SERVER, "8129"],
                                                  "wait_for_port": 8129}})
    assert r.status == 201, r
    sid = r.json()["id"]
    assert pa.metric("sandpit_pool_claims_total") == claims
    assert sorted(pa.pool()["sandboxes"]) == sorted(before)
    assert connect_once(pa.c, sid, 8129) == "hello from the start command"
    assert pa.c.delete(f"/v1/sandboxes/{sid}").status == 204

    r = pa.c.request("PUT", "/v1/pools/sc", {"template": start_template, "size": 1})
    assert r.status == 200, r
    p = wait_for(lambda: (q := pa.pool("sc"))["failures"] > 0 and q, 60, what="pool sc fails")
    assert p["ready"] == 0 and "warm pools do not hold" in p["last_error"], p
    r = pa.c.post("/v1/sandboxes", {"template": start_template})
    assert r.status == 201, r
    assert connect_once(pa.c, r.json()["id"], 8128) == "hello from the start command"
    assert pa.c.delete(f"/v1/sandboxes/{r.json()['id']}").status == 204


# --------------------------------------------------------------------------- images

@pytest.fixture(scope="module")
def image_setup(templates_dir):
    if not shutil.which("docker-registry") or not Path("/usr/bin/busybox").exists():
        pytest.skip("docker-registry and busybox-static are needed (mk/deps.sh)")
    d = Path(tempfile.mkdtemp(prefix="sandpit-it-startcmd-"))
    os.chmod(d, 0o755)
    reg = Registry(d / "reg")
    a = None
    try:
        a = start_agent("startcmd-img", templates_dir,
                        extra_args=["--images-dir", str(d / "images"), "--insecure-registry", reg.host])
        yield a, reg
    finally:
        if a:
            stop_agent(a)
        reg.stop()
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)])


def test_image_cmd_runs_only_when_asked(image_setup):
    """An image's Entrypoint + Cmd is its start command only with
    {"from_image": true} (most images' Cmd is a shell)."""
    a, reg = image_setup
    layer = make_layer(busybox_base([
        {"name": "bin/httpd", "type": "symlink", "target": "busybox"},
        {"name": "bin/wget", "type": "symlink", "target": "busybox"},
        {"name": "www", "type": "dir"},
        {"name": "www/index.html", "type": "file", "data": "served by the image's cmd\n"},
    ]))
    img = Image([layer], env=["PATH=/bin"], entrypoint=["httpd", "-f"], cmd=["-p", "8140", "-h", "/www"])
    reg.client.push("it/web", "latest", img)
    ref = f"{reg.host}/it/web"
    c = a.client
    r = c.post("/v1/sandboxes", {"image": ref, "start_cmd": {"from_image": True, "wait_for_port": 8140}},
               timeout=300)
    assert r.status == 201, r
    sid = r.json()["id"]
    procs = [p for p in c.processes(sid) if p.get("tag") == "start_cmd"]
    assert len(procs) == 1 and procs[0]["cmd"] == ["httpd", "-f", "-p", "8140", "-h", "/www"], procs
    # one fetch, no retry
    out = c.exec(sid, cmd=["wget", "-q", "-O", "-", "http://127.0.0.1:8140/"])
    assert out.exit_code == 0 and out.stdout == "served by the image's cmd\n", out
    assert c.delete(f"/v1/sandboxes/{sid}").status == 204
    # Without the request asking: not run.
    r = c.post("/v1/sandboxes", {"image": ref})
    assert r.status == 201, r
    assert c.processes(r.json()["id"]) == []
    assert c.delete(f"/v1/sandboxes/{r.json()['id']}").status == 204


def test_delete_while_waiting_for_the_port(client, agent, unique):
    """A DELETE while the create waits for the start command's port wins at
    once: the create answers 409, nothing stays."""
    import threading
    sid = f"sc-del-{unique}"
    marker = agent.state_dir / "sandboxes" / sid / "rootfs" / "tmp" / "start-cmd-running"
    out = {}

    def run():
        out["r"] = create_with(client, {"command": "touch /tmp/start-cmd-running; exec sleep 600",
                                        "wait_for_port": 8132, "ready_timeout": 600}, id=sid)
    t = threading.Thread(target=run)
    t.start()
    try:
        wait_for(lambda: marker.exists() or not t.is_alive(), 60, what="the start command running")
        assert t.is_alive(), out
        assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    finally:
        t.join(120)
    assert_error(out["r"], 409)
    assert "deleted while it was being created" in out["r"].json()["message"]
    left = agent.leftovers([sid], zombies=False)
    assert left == [], left
