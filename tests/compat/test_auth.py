"""API keys (docs/auth.md) through the real E2B SDKs: a key made with
`sandpit keys create` works for create, run and kill; a wrong key is refused
with 401 (the SDK's AuthenticationError) and makes nothing; a revoked key
stops working (waited for, not slept on); a key of namespace A neither sees
nor touches B's sandboxes. Plus the CLI's answers to bad input."""

import time

import pytest
from conftest import keys_cli, make_key

pytestmark = pytest.mark.slow

WRONG = "e2b_" + "1" * 40  # the form every SDK line takes, but no key of ours


def test_a_real_key_creates_runs_and_kills(sdk):
    out = sdk("auth.mjs", "run")
    assert out["stdout"] == "hello from a key\n"
    assert out["listed"] is True
    assert out["killed"] is True


def test_a_wrong_key_is_refused(sdk, agent):
    before = agent.client.get("/v1/sandboxes").json()
    out = sdk("auth.mjs", "refused", key=WRONG)
    assert out == {"create": "AuthenticationError", "list": "AuthenticationError"}
    assert agent.client.get("/v1/sandboxes").json() == before  # nothing made
    r = agent.gateway.get("/v2/sandboxes", headers={"X-API-KEY": WRONG})
    assert r.status == 401
    assert r.json() == {"code": 401, "message": "invalid API key"}
    # the key is in no log line
    assert WRONG not in agent.log_tail(lines=100000)


def test_a_revoked_key_stops_working(sdk, agent):
    key = make_key(agent, "revoking", name=f"rev-{sdk.line}")
    assert "ids" in sdk("auth.mjs", "list", key=key)
    r = keys_cli(agent, "revoke", f"rev-{sdk.line}")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while True:
        if agent.gateway.get("/v2/sandboxes", headers={"X-API-KEY": key}).status == 401:
            break
        assert time.monotonic() < deadline, "the revoked key still works after 10 s"
        time.sleep(0.1)
    assert sdk("auth.mjs", "refused", key=key) == {"create": "AuthenticationError",
                                                  "list": "AuthenticationError"}
    assert key not in agent.log_tail(lines=100000)


def test_a_key_sees_only_its_namespace(sdk, agent):
    key_a = make_key(agent, "team-a")
    key_b = make_key(agent, "team-b")
    sid = sdk("auth.mjs", "create", key=key_b)["id"]
    try:
        assert sid in sdk("auth.mjs", "list", key=key_b)["ids"]
        out = sdk("auth.mjs", "foreign", sid, key=key_a)
        assert out["listed"] is False
        assert out["info"] in ("NotFoundError", "SandboxNotFoundError")
        assert out["connect"] in ("NotFoundError", "SandboxNotFoundError")
        assert out["setTimeout"] in ("NotFoundError", "SandboxNotFoundError")
        assert out["kill"] is False
        # still there, and B's
        r = agent.client.get(f"/v1/sandboxes/{sid}")
        assert r.status == 200 and r.json()["labels"]["sandpit.dev/namespace"] == "team-b"
        # B's access token survived A's attempts: B still connects and runs commands
        assert sdk("auth.mjs", "use", sid, key=key_b)["stdout"] == "still mine\n"
        # the same answer as for a sandbox that does not exist
        ra = agent.gateway.get(f"/sandboxes/{sid}", headers={"X-API-KEY": key_a})
        rn = agent.gateway.get("/sandboxes/nosuchsandbox0", headers={"X-API-KEY": key_a})
        assert ra.status == rn.status == 404
    finally:
        assert sdk("auth.mjs", "kill", sid, key=key_b)["kill"] is True


@pytest.mark.parametrize("args,word", [
    ([], "missing subcommand"),
    (["frob"], "unknown subcommand frob"),
    (["create"], "create needs --namespace"),
    (["create", "--namespace", "Team_A"], "invalid namespace"),
    (["create", "--namespace", "a", "--name", "a/b"], "invalid name"),
    (["create", "--namespace"], "needs an argument"),
    (["revoke"], "revoke needs the key's ID or NAME"),
    (["revoke", "nosuchkey"], "no key nosuchkey"),
    (["list", "extra"], "unexpected argument extra"),
    (["list", "--bogus"], "unknown option --bogus"),
])
def test_keys_cli_bad_input(agent, args, word):
    before = keys_cli(agent, "list", "--json").stdout
    r = keys_cli(agent, *args)
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sandpit: keys: ") and word in lines[0], r.stderr
    assert keys_cli(agent, "list", "--json").stdout == before  # nothing changed
