"""Sandbox lifecycle: create / get / list / delete, validation, timeouts."""

import json
import re
import shutil
import time
from datetime import datetime

import pytest

from conftest import assert_error, rand_suffix, raw_unix, start_agent, stop_agent, wait_for

ID_RE = re.compile(r"^[a-z0-9]{20}$")


def ts(s):
    assert isinstance(s, str) and s.endswith("Z"), f"timestamp {s!r} is not UTC ISO-8601"
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def ms(s):
    """An API timestamp (millisecond resolution) as integer milliseconds."""
    return round(ts(s) * 1000)


def host_ms():
    return int(time.time() * 1000)


def test_healthz_and_info(client):
    r = client.get("/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}, r
    r = client.get("/v1/info")
    assert r.status == 200, r
    info = r.json()
    assert isinstance(info, dict)
    assert "host" in json.dumps(info), f"/v1/info does not list the host template: {info}"


def test_create_defaults_get_delete(client):
    before = host_ms()
    r = client.post("/v1/sandboxes", {"template": "host"})
    after = host_ms() + 1
    assert r.status == 201, r
    assert r.content_type.startswith("application/json"), r
    sb = r.json()
    sid = sb["id"]
    assert ID_RE.match(sid), f"default id {sid!r} is not 20 chars of [a-z0-9]"
    assert sb["template"] == "host"
    assert sb["state"] == "running"
    assert sb["cpu"] == 1
    assert sb["memory"] == 512 * 1024 * 1024
    assert sb["pids"] == 512
    assert sb["disk"] == 512 * 1024 * 1024
    assert sb["user"] == "user"
    assert sb["env"] == {} and sb["labels"] == {}
    assert sb["timeout"] == 300
    assert sb["oom_kills"] == 0
    created, expires = ms(sb["created_at"]), ms(sb["expires_at"])
    assert before <= created <= after, f"created_at {sb['created_at']} is not during the request"
    assert expires - created == 300 * 1000, f"expires_at - created_at != 300 s: {sb}"

    g = client.sandbox(sid)
    assert g.status == 200, g
    assert g.json()["id"] == sid and g.json()["state"] == "running"
    assert sid in client.list_ids()

    d = client.delete(f"/v1/sandboxes/{sid}")
    assert d.status == 204, d
    assert_error(client.sandbox(sid), 404)
    assert sid not in client.list_ids()


def test_ids_are_unique(client):
    ids = [client.create()["id"] for _ in range(5)]
    assert len(set(ids)) == 5, ids
    for sid in ids:
        assert ID_RE.match(sid), sid
        assert client.delete(f"/v1/sandboxes/{sid}").status == 204


def test_create_with_every_field(client, unique):
    sid = f"it-{unique}-x"
    spec = {
        "template": "host", "id": sid, "cpu": "500m", "memory": "64Mi", "pids": 64, "disk": "16Mi",
        "env": {"GREETING": "hello"}, "timeout": 60, "user": "root", "labels": {"team": "ml", "run": unique},
    }
    sb = client.create(**spec)
    assert sb["id"] == sid
    assert sb["cpu"] == 0.5
    assert sb["memory"] == 64 * 1024 * 1024
    assert sb["pids"] == 64
    assert sb["disk"] == 16 * 1024 * 1024
    assert sb["env"] == {"GREETING": "hello"}
    assert sb["labels"] == {"team": "ml", "run": unique}
    assert sb["user"] == "root"
    assert sb["timeout"] == 60
    assert ms(sb["expires_at"]) - ms(sb["created_at"]) == 60 * 1000, sb
    assert client.sandbox(sid).json()["labels"] == {"team": "ml", "run": unique}
    # the environment and user really apply
    assert client.sh(sid, 'echo "$GREETING $(id -u)"') == "hello 0\n"


@pytest.mark.parametrize("field,value,expected", [
    ("memory", 268435456, 268435456),
    ("memory", "100M", 100_000_000),
    ("memory", "1Gi", 1 << 30),
    ("disk", "2Mi", 2 << 20),
    ("cpu", 1.5, 1.5),
    ("cpu", "1.5", 1.5),
    ("cpu", "250m", 0.25),
])
def test_quantities(client, field, value, expected):
    sb = client.create(**{field: value})
    assert sb[field] == expected, f"{field}={value!r} -> {sb[field]!r}"


def test_duplicate_id_is_409(client, unique):
    sid = f"dup-{unique}"
    client.create(id=sid)
    r = client.post("/v1/sandboxes", {"template": "host", "id": sid})
    assert assert_error(r, 409).get("reason") == "AlreadyExists", r
    # the first one is untouched
    assert client.sandbox(sid).json()["state"] == "running"
    assert client.sh(sid, "echo alive") == "alive\n"


def test_list_label_filter(client, unique):
    a = client.create(labels={"team": "ml", "env": "prod", "run": unique})["id"]
    b = client.create(labels={"team": "ml", "run": unique})["id"]
    c = client.create(labels={"team": "web", "run": unique})["id"]
    run = f"run={unique}"
    assert client.list_ids(run) == sorted([a, b, c])
    assert client.list_ids(run, "team=ml") == sorted([a, b])
    assert client.list_ids(run, "team=ml", "env=prod") == [a]
    assert client.list_ids(run, "team=web") == [c]
    assert client.list_ids(run, "team=nope") == []
    assert client.list_ids(f"run={unique}x") == []
    r = client.get("/v1/sandboxes")
    assert r.status == 200 and set([a, b, c]) <= {s["id"] for s in r.json()["sandboxes"]}
    # the listed objects are full sandbox objects
    full = [s for s in r.json()["sandboxes"] if s["id"] == a][0]
    assert full["labels"] == {"team": "ml", "env": "prod", "run": unique} and full["state"] == "running"


BAD_CREATES = [
    ("memory-garbage", {"memory": "lots"}),
    ("memory-bad-suffix", {"memory": "12Qi"}),
    ("memory-negative", {"memory": -1}),
    ("memory-too-small", {"memory": "1Mi"}),
    ("memory-too-big", {"memory": "65Gi"}),
    ("cpu-negative", {"cpu": -1}),
    ("cpu-zero", {"cpu": 0}),
    ("cpu-too-many", {"cpu": 65}),
    ("cpu-garbage", {"cpu": "fast"}),
    ("pids-too-few", {"pids": 2}),
    ("pids-not-int", {"pids": "many"}),
    ("disk-zero", {"disk": 0}),
    ("disk-too-small", {"disk": "8k"}),
    ("timeout-zero", {"timeout": 0}),
    ("timeout-too-long", {"timeout": 604801}),
    ("id-uppercase", {"id": "Bad_ID"}),
    ("id-leading-dash", {"id": "-abc"}),
    ("id-too-long", {"id": "a" * 64}),
    ("id-empty", {"id": ""}),
    ("unknown-field", {"tempalte": "host"}),
    ("env-not-a-map", {"env": ["A=1"]}),
    ("env-value-not-string", {"env": {"A": 1}}),
    ("labels-value-not-string", {"labels": {"a": 1}}),
    ("template-not-string", {"template": 7}),
]


@pytest.mark.parametrize("name,extra", BAD_CREATES, ids=[n for n, _ in BAD_CREATES])
def test_bad_create_is_400_and_leaves_nothing(client, agent, name, extra):
    body = {"template": "host"}
    body.update(extra)
    n_before = len(client.list_ids())
    r = client.post("/v1/sandboxes", body)
    assert_error(r, 400)
    assert len(client.list_ids()) == n_before
    assert agent.leftovers() == []


@pytest.mark.parametrize("raw", [
    b'{"template": "host"',
    b"not json",
    b"[]",
    b'"host"',
    b"",
], ids=["truncated", "garbage", "array", "string", "empty"])
def test_malformed_json_is_400(client, agent, raw):
    r = client.request("POST", "/v1/sandboxes", raw=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    assert client.list_ids() == []
    assert agent.leftovers() == []


def test_unknown_template_is_404(client, agent):
    r = client.post("/v1/sandboxes", {"template": f"no-such-template-{rand_suffix()}"})
    assert_error(r, 404)
    assert client.list_ids() == []
    assert agent.leftovers() == []


def test_template_path_traversal_is_400(client, agent):
    """A name no template can have is bad input (400), not an unknown one."""
    body = assert_error(client.post("/v1/sandboxes", {"template": "../host"}), 400)
    assert "template name" in body["message"], body
    assert client.list_ids() == []
    assert agent.leftovers() == []


def test_broken_template_is_500(client, agent, templates_dir):
    """A template that is there but unusable is the node's fault: 500 with a
    JSON message (it used to answer 404, as if unknown), and nothing is left."""
    name = f"broken-{rand_suffix()}"
    d = templates_dir / name
    (d / "rootfs").mkdir(parents=True)
    try:
        (d / "template.json").write_text("not json")
        body = assert_error(client.post("/v1/sandboxes", {"template": name}), 500)
        assert f"template {name} is not usable" in body["message"], body
        assert client.list_ids() == []
        assert agent.leftovers() == []
    finally:
        shutil.rmtree(d)


def test_failed_setup_step_is_500_and_leaves_nothing(templates_dir):
    """A create whose sandpit-init exits before it is ready fails in the agent's
    own step: 500 whatever the errno (ECHILD used to answer 409, which an
    operator reads as "already exists"), and the half-made sandbox is gone."""
    a = start_agent(f"deadinit-{rand_suffix()}", templates_dir, extra_args=["--init", "/bin/true"])
    try:
        body = assert_error(a.client.post("/v1/sandboxes", {"template": "host"}), 500)
        assert "sandpit-init" in body["message"], body
        assert a.client.list_ids() == []
        # The dead init is reparented to the host's PID 1, which reaps it in its own time.
        assert a.leftovers(zombies=False) == []
    finally:
        stop_agent(a)


def test_oversize_body_is_413(agent):
    """A body over 16 MiB is refused with 413 (the agent may answer before
    reading it all, so this uses a raw socket and tolerates a reset while
    sending)."""
    size = 17 * 1024 * 1024
    filler = b" " * (size - 20)
    body = b'{"template":"host"' + filler + b"}"
    head = (f"POST /v1/sandboxes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    data = raw_unix(agent, head + body, timeout=60)
    assert data, "no answer to an oversize body"
    status_line = data.split(b"\r\n", 1)[0].decode()
    assert status_line.split()[1] == "413", f"oversize body answered {status_line!r}"
    assert agent.client.list_ids() == []


def test_unknown_id_get_and_delete_are_404(client):
    body = assert_error(client.get("/v1/sandboxes/nosuchsandbox0000000"), 404)
    assert "nosuchsandbox0000000" in body["message"]
    assert_error(client.delete("/v1/sandboxes/nosuchsandbox0000000"), 404)
    assert_error(client.post("/v1/sandboxes/nosuchsandbox0000000/timeout", {"timeout": 10}), 404)
    assert_error(client.post("/v1/sandboxes/nosuchsandbox0000000/exec", {"cmd": ["true"]}), 404)


def test_unknown_route_404_and_wrong_method_405(client):
    assert_error(client.get("/v1/nothing-here"), 404)
    assert_error(client.request("PUT", "/v1/sandboxes", body={}), 405)
    assert_error(client.request("PATCH", "/healthz"), 405)


def test_delete_twice(client, sandbox):
    sid = sandbox["id"]
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert_error(client.delete(f"/v1/sandboxes/{sid}"), 404)


def test_set_timeout_moves_expires_at(client, sandbox):
    sid = sandbox["id"]
    t0 = host_ms()
    r = client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": 600})
    t1 = host_ms() + 1
    assert r.status == 200, r
    # now + 600 s, "now" being while the request ran
    new = ms(r.json()["expires_at"])
    assert t0 <= new - 600 * 1000 <= t1, (r.json()["expires_at"], t0, t1)
    assert ms(client.sandbox(sid).json()["expires_at"]) == new
    # shortening works too (E2B semantics)
    t0 = host_ms()
    r = client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": 100})
    t1 = host_ms() + 1
    assert r.status == 200, r
    assert r.json()["timeout"] == 100, r
    shorter = ms(r.json()["expires_at"])
    assert t0 <= shorter - 100 * 1000 <= t1 and shorter < new, (r.json()["expires_at"], t0, t1)
    assert_error(client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": 0}), 400)
    assert_error(client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": "soon"}), 400)
    assert_error(client.post(f"/v1/sandboxes/{sid}/timeout", {}), 400)
    assert client.sandbox(sid).json()["state"] == "running"


def gone(client, sid):
    r = client.sandbox(sid)
    return r.status == 404


def test_timeout_expiry_deletes_sandbox(client, agent):
    sid = client.create(timeout=2)["id"]
    assert client.sandbox(sid).status == 200
    wait_for(lambda: gone(client, sid), timeout=30, interval=0.2, what=f"sandbox {sid} deleted at its 2 s timeout")
    assert sid not in client.list_ids()
    # the agent released everything by itself
    wait_for(lambda: agent.leftovers([sid]) == [], timeout=10, what="expired sandbox cleaned up")


def test_shortened_timeout_expires(client, sandbox):
    sid = sandbox["id"]
    r = client.post(f"/v1/sandboxes/{sid}/timeout", {"timeout": 1})
    assert r.status == 200, r
    wait_for(lambda: gone(client, sid), timeout=30, interval=0.2, what=f"sandbox {sid} deleted after timeout set to 1 s")


def test_agent_raises_its_open_files_limit(templates_dir):
    """The agent holds an fd per sandbox (its init's pidfd): with the usual
    soft limit of 1,024 a node would stop at about 1,000 sandboxes. Started
    with a low soft limit, the agent raises it to its hard limit (or more),
    user namespaces or not."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        a = start_agent("nofile", templates_dir, extra_args=["--userns", "off"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        with open(f"/proc/{a.proc.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max open files"))
        got_soft, got_hard = (int(v) for v in line.split()[3:5])
        assert got_soft >= hard and got_soft == got_hard, line
        sid = a.client.create(template="host")["id"]
        assert a.client.sh(sid, "ulimit -n") == f"{min(hard, 65536)}\n"  # bundle.c
    finally:
        stop_agent(a)
