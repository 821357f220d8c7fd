"""Secret env: values reach the process environment only. They are never in
a file under the state dir (bundle, state.json, runc state, logs), never in an
agent log line at any level, never in an API response, and are masked as ***
in exec output, also when split across two writes, in reconnect streams and
after the agent is SIGKILLed and restarted (sandpit-init holds them)."""

import hashlib
import json
import os

import pytest

from conftest import assert_error, debug_agent_fixture, need_default_template

SECRET = "sup3r-s3cret-Vq7ZxK"
SECRET2 = "0th3r-t0ken-Lm9Pw"


dagent = debug_agent_fixture("secrets")


@pytest.fixture
def dclient(dagent):
    return dagent.client


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def files_containing(root, needle):
    """Regular files under root whose bytes contain needle."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                with open(p, "rb") as fh:
                    if needle.encode() in fh.read():
                        hits.append(p)
            except OSError:
                pass
    return hits


def assert_nowhere(agent, *bodies):
    for value in (SECRET, SECRET2):
        assert files_containing(agent.state_dir, value) == [], "secret value in a state file"
        assert value.encode() not in agent.log.read_bytes(), "secret value in the agent log"
        for b in bodies:
            raw = b if isinstance(b, bytes) else str(b).encode()
            assert value.encode() not in raw, f"secret value in an API response: {raw[:300]!r}"


def test_secret_env_applied_masked_and_not_stored(dclient, dagent):
    r = dclient.post("/v1/sandboxes", {"template": "host", "env": {"PLAIN": "visible"},
                                       "secret_env": {"API_KEY": SECRET}})
    assert r.status == 201, r
    sid = r.json()["id"]
    assert r.json()["secret_env"] == ["API_KEY"]
    assert "API_KEY" not in r.json()["env"]
    bodies = [r.body]
    # the process has the value (compared inside, never printed) ...
    chk = dclient.exec(sid, shell=f'test "$(printf %s "$API_KEY" | sha256sum | cut -c1-64)" = {sha(SECRET)}')
    assert chk.exit_code == 0, chk
    # ... and what it prints is masked, on stdout and stderr
    out = dclient.exec(sid, shell='echo "key=$API_KEY plain=$PLAIN"; echo "err $API_KEY" >&2')
    assert out.exit_code == 0
    assert out.stdout == "key=*** plain=visible\n" and out.stderr == "err ***\n", out
    bodies += [e for _, e in out.events]
    for path in (f"/v1/sandboxes/{sid}", "/v1/sandboxes", f"/v1/sandboxes/{sid}/metrics",
                 f"/v1/sandboxes/{sid}/processes", "/metrics", "/v1/info"):
        g = dclient.get(path)
        assert g.status == 200, (path, g)
        bodies.append(g.body)
    assert dclient.sandbox(sid).json()["secret_env"] == ["API_KEY"]
    # the bundle's config, state.json, runc's state, logs: nowhere
    assert (dagent.state_dir / "sandboxes" / sid / "config.json").exists()
    assert_nowhere(dagent, *bodies)


def test_masking_across_chunks(dclient, dagent):
    sid = dclient.create(secret_env={"S": SECRET})["id"]
    # the value in two writes with a pause between: two reads in init
    script = ('echo start; printf %s "$S" | cut -c1-7 | tr -d "\\n"; sleep 0.5; '
              'printf %s "$S" | cut -c8- ; echo end')
    r = dclient.exec(sid, shell=script)
    assert r.exit_code == 0, r
    assert r.stdout == "start\n***\nend\n", r
    # a prefix that never completes comes out at the end, unmasked
    r = dclient.exec(sid, shell='printf %s "$S" | cut -c1-7 | tr -d "\\n"; sleep 0.3; printf XY')
    assert r.stdout == SECRET[:7] + "XY", r
    r = dclient.exec(sid, shell='printf %s "$S" | cut -c1-7 | tr -d "\\n"')
    assert r.stdout == SECRET[:7], r
    # many back to back, split everywhere by a tiny pipe
    r = dclient.exec(sid, shell='for i in 1 2 3 4 5 6 7 8; do printf "%s," "$S"; done | '
                                'dd bs=5 2>/dev/null; echo')
    assert r.stdout == "***," * 8 + "\n", r
    assert_nowhere(dagent, *[e for _, e in r.events])


def test_exec_level_secrets_and_reconnect(dclient, dagent):
    sid = dclient.create(secret_env={"S": SECRET})["id"]
    r = dclient.exec(sid, shell='echo "$S $T $S"', secret_env={"T": SECRET2})
    assert r.stdout == "*** *** ***\n", r
    # an exec's plain env overrides the sandbox's secret (and is not masked)
    r = dclient.exec(sid, shell='echo "$S"', env={"S": "mine"})
    assert r.stdout == "mine\n", r
    # background: masked in the buffered output that a reconnect replays
    bg = dclient.post(f"/v1/sandboxes/{sid}/exec", {
        "shell": 'echo "bg $S $T"; sleep 0.3; echo "again $T"', "background": True,
        "secret_env": {"T": SECRET2}})
    assert bg.status == 201
    pid = bg.json()["pid"]
    rc = dclient.reconnect(sid, pid)
    assert rc.stdout == "bg *** ***\nagain ***\n", rc
    rc2 = dclient.reconnect(sid, pid)
    assert rc2.stdout == rc.stdout
    # a secret in argv is masked in the process list and in spawn errors
    bg2 = dclient.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sh", "-c", "sleep 600", SECRET2],
                                                     "background": True, "secret_env": {"T": SECRET2},
                                                     "tag": "t-" + SECRET2})
    assert bg2.status == 201
    listed = [p for p in dclient.processes(sid) if p["pid"] == bg2.json()["pid"]]
    assert listed and listed[0]["cmd"] == ["sh", "-c", "sleep 600", "***"], listed
    assert listed[0]["tag"] == "t-***", listed
    bad = dclient.post(f"/v1/sandboxes/{sid}/exec", {"cmd": [SECRET2], "secret_env": {"T": SECRET2}})
    assert_error(bad, 400)
    assert SECRET2 not in bad.body.decode()
    assert "***" in bad.json()["message"]
    ps = dclient.get(f"/v1/sandboxes/{sid}/processes")
    assert_nowhere(dagent, ps.body, bg.body, bad.body, *[e for _, e in rc.events])


def test_secrets_survive_agent_sigkill(dclient, dagent):
    sid = dclient.create(secret_env={"S": SECRET})["id"]
    bg = dclient.post(f"/v1/sandboxes/{sid}/exec", {
        "shell": 'sleep 2; echo "late $S"', "background": True})
    assert bg.status == 201
    dagent.kill9()
    dagent.start()
    g = dclient.sandbox(sid)
    assert g.status == 200 and g.json()["secret_env"] == ["S"], g
    # processes started after the restart still get the value, still masked
    chk = dclient.exec(sid, shell=f'test "$(printf %s "$S" | sha256sum | cut -c1-64)" = {sha(SECRET)}')
    assert chk.exit_code == 0, chk
    r = dclient.exec(sid, shell='echo "$S"')
    assert r.stdout == "***\n", r
    rc = dclient.reconnect(sid, bg.json()["pid"])
    assert rc.stdout == "late ***\n", rc
    assert_nowhere(dagent, g.body, *[e for _, e in r.events + rc.events])


def test_secret_env_bad_input(dclient, dagent, unique):
    cases = [
        {"secret_env": "S=x"},
        {"secret_env": {"S": 1}},
        {"secret_env": {"": SECRET}},
        {"secret_env": {"A=B": SECRET}},
        {"secret_env": {"S": SECRET + "\u0000x"}},
        {"secret_env": {"S": "x" * (64 * 1024 + 1)}},
        {"env": {"S": "plain"}, "secret_env": {"S": SECRET}},
    ]
    bodies = []
    for c in cases:
        r = dclient.post("/v1/sandboxes", dict(template="host", **c))
        assert_error(r, 400)
        bodies.append(r.body)
    sid = dclient.create()["id"]
    for c in ({"secret_env": []}, {"secret_env": {"S": None}},
              {"env": {"S": "a"}, "secret_env": {"S": SECRET}}):
        r = dclient.post(f"/v1/sandboxes/{sid}/exec", dict(cmd=["true"], **c))
        assert_error(r, 400)
        bodies.append(r.body)
    assert_error(dclient.post(f"/v1/sandboxes/nope-{unique}/exec",
                              {"cmd": ["true"], "secret_env": {"S": SECRET}}), 404)
    assert_nowhere(dagent, *bodies)


def test_cli_secret_env(dclient, dagent):
    import subprocess
    from conftest import REPO
    env = dict(os.environ, MY_TOKEN=SECRET)
    cli = [str(REPO / "build" / "bin" / "sandpit"), "--server", f"unix://{dagent.socket}"]
    r = subprocess.run(cli + ["create", "--template", "host", "--secret-env", "MY_TOKEN"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    sid = r.stdout.strip()
    dclient.created.append(sid)
    r = subprocess.run(cli + ["exec", "--secret-env", f"OTHER={SECRET2}", sid, "--", "sh", "-c",
                              'echo "$MY_TOKEN $OTHER"'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "*** ***\n", r
    r = subprocess.run(cli + ["exec", "--secret-env", "UNSET_VAR_XYZ", sid, "true"],
                       capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert r.returncode == 2 and "UNSET_VAR_XYZ" in r.stderr, r
    assert_nowhere(dagent)


def code_events(client, sid, code, **kw):
    """Runs code (test_code's helper) and returns the Run and its raw events."""
    from test_code import run_code
    r = run_code(client, sid, code, **kw)
    assert r.status == 200, r
    raw = "".join(json.dumps(ev) for _, ev in r.events)
    for value in (SECRET, SECRET2):
        assert value not in raw, f"secret value in a run_code event: {r}"
    return r


def test_run_code_masks_secrets(dclient, dagent):
    """The code interpreter's kernels get the sandbox's secrets, and every run_code event
    (stdout, stderr, results, errors) has them masked, also split across two writes."""
    need_default_template()
    sid = dclient.create(template="default", memory="1Gi", secret_env={"TOKEN": SECRET})["id"]
    py = lambda code, **kw: code_events(dclient, sid, code, language="python", **kw)  # noqa: E731
    # the kernel has the value (compared inside: the digest is not masked) ...
    r = py(f'import hashlib, os, sys, time\nhashlib.sha256(os.environ["TOKEN"].encode()).hexdigest() == "{sha(SECRET)}"')
    assert r.text == "True", r
    # ... and what it prints is masked: print, stderr, a subprocess on fd 1
    r = py('print("k=" + os.environ["TOKEN"]); print(os.environ["TOKEN"], file=sys.stderr)\n'
           'os.system("echo sub $TOKEN")')
    assert r.stdout == "k=***\nsub ***\n" and r.stderr == "***\n", r
    # split across two writes with a pause between (two events without masking)
    r = py('v = os.environ["TOKEN"]\nsys.stdout.write(v[:3]); sys.stdout.flush(); time.sleep(0.3)\n'
           'print(v[3:])')
    assert r.stdout == "***\n", r
    # a prefix that never completes comes out at the end of the run, unmasked
    r = py('sys.stdout.write(v[:7])')
    assert r.stdout == SECRET[:7], r
    # results: repr, json (keys too), html; errors: value and traceback
    r = py('os.environ["TOKEN"]')
    assert r.text == "'***'", r
    r = py('{"k": v, v: [v]}')
    assert r.main["json"] == {"k": "***", "***": ["***"]}, r
    r = py('class H:\n    def _repr_html_(self): return "<b>%s</b>" % v\ndisplay(H())')
    assert r.results and r.results[0]["html"] == "<b>***</b>", r
    r = code_events(dclient, sid, 'raise ValueError("bad " + os.environ["TOKEN"])', language="python")
    assert r.err["name"] == "ValueError" and r.err["value"] == "bad ***", r
    assert "ValueError: bad ***" in r.err["traceback"], r
    # the names variable is the driver's, not the user's
    assert py('os.environ.get("SANDPIT_SECRET_NAMES")').main is None
    # a run's own secret_env: in the environment for that run only, and masked
    r = py('print(os.environ["T"], os.environ["TOKEN"])', secret_env={"T": SECRET2})
    assert r.stdout == "*** ***\n", r
    assert py('"T" in os.environ').text == "False"
    bad = dclient.post(f"/v1/sandboxes/{sid}/code", {"code": "1", "env": {"T": "a"},
                                                   "secret_env": {"T": SECRET2}})
    assert_error(bad, 400)
    assert SECRET2 not in bad.body.decode()

    js = lambda code, **kw: code_events(dclient, sid, code, language="javascript", **kw)  # noqa: E731
    r = js('console.log("k=" + process.env.TOKEN); console.error(process.env.TOKEN)')
    assert r.stdout == "k=***\n" and r.stderr == "***\n", r
    r = js('const v = process.env.TOKEN; process.stdout.write(v.slice(0, 3));\n'
           'await new Promise((res) => setTimeout(res, 300)); console.log(v.slice(3))')
    assert r.stdout == "***\n", r
    assert js('process.env.TOKEN').text == "'***'"
    r = js('({k: v, [v]: [v]})')
    assert r.main["json"] == {"k": "***", "***": ["***"]}, r
    r = js('throw new Error("bad " + v)')
    assert r.err["value"] == "bad ***" and "***" in r.err["traceback"], r
    r = js('console.log(process.env.T)', secret_env={"T": SECRET2})
    assert r.stdout == "***\n", r

    sh = lambda code, **kw: code_events(dclient, sid, code, language="bash", **kw)  # noqa: E731
    r = sh('echo "k=$TOKEN"; echo "$TOKEN" >&2')
    assert r.stdout == "k=***\n" and r.stderr == "***\n", r
    r = sh('printf %s "${TOKEN:0:3}"; sleep 0.3; echo "${TOKEN:3}"')
    assert r.stdout == "***\n", r
    r = sh('echo "$T"', secret_env={"T": SECRET2})
    assert r.stdout == "***\n", r
    assert sh('echo "${T-unset}"').stdout == "unset\n"
    assert_nowhere(dagent, bad.body)
