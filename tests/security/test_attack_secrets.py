"""Attacks on secret env values: a process of another user in the sandbox
reading them from /proc, the agent's answers (listing, status, processes,
metrics, error messages for bad requests that carry them), the agent's log at
debug level, and the exec output they are masked in. The values are checked
inside the sandbox by comparison, never printed (output is masked, which would
hide a leak). The secret's owner itself has the value: that is what it is for."""

import json

import pytest

from conftest import debug_agent_fixture, rand_suffix

SECRET = "atk-s3cr3t-" + rand_suffix(16)
EXEC_SECRET = "atk-exec-" + rand_suffix(16)


dagent = debug_agent_fixture("secattack")


@pytest.fixture
def dclient(dagent):
    return dagent.client


# Counts, in every /proc/PID/environ and cmdline the caller can open, the
# values given reversed in argv (so this process's own argv holds neither).
HUNT = r"""
import os, sys
want = [v[::-1].encode() for v in sys.argv[1:]]
hits, readable, denied = [], 0, 0
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    for f in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{f}", "rb").read()
            readable += 1
        except OSError:
            denied += 1
            continue
        hits += [f"{pid}/{f}/{i}" for i, w in enumerate(want) if w in data]
print(" ".join(hits) or "none", readable, denied)
"""


def hunt(client, sid, user, *values):
    r = client.exec(sid, cmd=["python3", "-c", HUNT, *[v[::-1] for v in values]], user=user)
    assert r.exit_code == 0, r
    hits, readable, denied = r.stdout.split()
    return hits, int(readable), int(denied)


def test_user_cannot_read_roots_secret_env(dclient):
    """A root process started with an exec-level secret; `user` reads every
    /proc/PID/environ it can: the value is in none (root's are closed to it)."""
    sid = dclient.create()["id"]
    r = dclient.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sleep", "3131"], "background": True, "user": "root",
                                                    "secret_env": {"ROOT_ONLY": EXEC_SECRET}})
    assert r.status == 201, r
    # positive control: root finds the value in its own process's environ
    hits, _, _ = hunt(dclient, sid, "root", EXEC_SECRET)
    assert hits != "none", "the hunt does not find a secret it can see"
    hits, readable, denied = hunt(dclient, sid, "user", EXEC_SECRET)
    assert hits == "none", f"user read root's secret from /proc: {hits}"
    assert denied >= 1, "user could open every process's environ"


def test_init_holds_no_secret_in_environ_or_cmdline(dclient):
    """sandpit-init gets the sandbox's secret env over its socket, not in its
    own environment or argv: root reading /proc/1/environ and cmdline finds
    nothing, nor in any process other than those started with it."""
    sid = dclient.create(secret_env={"SBX_SECRET": SECRET})["id"]
    code = ("import sys\nv = sys.argv[1][::-1].encode()\nfor f in ('environ', 'cmdline'):\n"
            "    try:\n        print(f, v in open('/proc/1/' + f, 'rb').read())\n"
            "    except OSError as e:\n        print(f, 'denied', e.errno)\n")
    r = dclient.exec(sid, cmd=["python3", "-c", code, SECRET[::-1]], user="root", env={"SBX_SECRET": "overridden"})
    assert r.exit_code == 0, r
    assert "True" not in r.stdout and r.stdout.count("\n") == 2, r


def test_secret_values_in_no_answer_or_log(dclient, dagent):
    """A sandbox and a background process with secrets, then every read
    endpoint (get, list, processes, metrics, /metrics, info, network): no
    answer and no line of the debug log holds a value."""
    before = dagent.log_size()
    sid = dclient.create(secret_env={"SBX_SECRET": SECRET})["id"]
    r = dclient.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["sleep", "3132"], "background": True,
                                                    "secret_env": {"PROC_SECRET": EXEC_SECRET}})
    assert r.status == 201, r
    bodies = [r.body]
    for path in (f"/v1/sandboxes/{sid}", "/v1/sandboxes", f"/v1/sandboxes/{sid}/processes",
                 f"/v1/sandboxes/{sid}/metrics", "/metrics", "/v1/info", f"/v1/sandboxes/{sid}/network"):
        g = dclient.get(path)
        assert g.status == 200, (path, g)
        bodies.append(g.body)
    log = dagent.log.read_bytes()[before:]
    assert sid.encode() in log, "the debug log says nothing of the sandbox: the check would be empty"
    for v in (SECRET, EXEC_SECRET):
        assert v.encode() not in log, "a secret value in the agent's log"
        for b in bodies:
            assert v.encode() not in b, f"a secret value in an answer: {b[:200]!r}"


@pytest.mark.parametrize("bad", [
    {"secret_env": {"A=B": SECRET}},
    {"secret_env": {"DUP": SECRET}, "env": {"DUP": "x"}},
    {"secret_env": {"NUL": SECRET + "\u0000"}},
    {"secret_env": {"OK": SECRET}, "memory": "lots"},
    {"secret_env": {"OK": SECRET, "N": 5}},
    {"secret_env": {"OK": SECRET}, "template": "../nope"},
], ids=["bad-name", "name-in-env", "nul", "other-bad-field", "non-string", "bad-template"])
def test_error_messages_never_echo_a_secret(dclient, dagent, bad):
    """A create that fails for any reason while carrying a secret: the 4xx
    message and the log do not hold the value."""
    before = dagent.log_size()
    body = dict({"template": "host"}, **bad)
    r = dclient.post("/v1/sandboxes", body)
    assert 400 <= r.status < 500, r
    assert SECRET.encode() not in r.body, r
    assert SECRET.encode() not in dagent.log.read_bytes()[before:]


def test_exec_error_messages_never_echo_a_secret(dclient, dagent):
    """An exec that fails (unknown user, missing command, bad cwd) with a
    process secret: neither the answer nor the log holds the value."""
    sid = dclient.create()["id"]
    before = dagent.log_size()
    for extra in ({"user": "nobody-here"}, {"cmd": ["/no/such/binary"]}, {"cwd": "/no/such/dir"},
                  {"secret_env": {"X": EXEC_SECRET, "Y": 1}}):
        body = dict({"cmd": ["true"], "secret_env": {"X": EXEC_SECRET}}, **extra)
        r = dclient.exec(sid, **body)
        raw = json.dumps(r.error).encode() if r.error is not None else b"".join(
            json.dumps(e).encode() for e in r.events)
        assert EXEC_SECRET.encode() not in raw, (extra, raw[:300])
    assert EXEC_SECRET.encode() not in dagent.log.read_bytes()[before:]


@pytest.mark.parametrize("how", [
    'printf "%s" "$S"', 'echo "$S" >&2', 'printf "%s\\n" "$S" | fold -w 5 | tr -d "\\n"',
    'python3 -c "import os,sys; [sys.stdout.write(c) or sys.stdout.flush() for c in os.environ[\'S\']]"',
])
def test_exec_output_is_masked_however_written(dclient, how):
    """The process prints its secret whole, on stderr, rebuilt from pieces,
    and one byte per write: the stream never carries it."""
    sid = dclient.create(secret_env={"S": SECRET})["id"]
    r = dclient.exec(sid, shell=how)
    assert r.exit_code == 0, r
    assert SECRET not in r.stdout and SECRET not in r.stderr, r
    assert "***" in r.stdout + r.stderr, r
