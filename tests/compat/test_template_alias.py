"""E2B's template names on a node without sandpit's template for them: the
gateway of an agent whose templates directory has only `host` answers
Sandbox.create()'s code-interpreter-v1 with a 404 that names both the
template it looked for and the E2B name (docs/e2b.md), and makes nothing."""

import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import build_templates, make_key, refresh_gateway_port, start_agent, stop_agent

pytestmark = pytest.mark.slow


@pytest.fixture
def bare_agent():
    d = Path(tempfile.mkdtemp(prefix="sandpit-compat-bare-"))
    d.chmod(0o755)
    build_templates(d)
    # Only `host`: no link to the machine's default or code-interpreter.
    for name in ("default", "code-interpreter"):
        if (d / name).is_symlink():
            (d / name).unlink()
    a = start_agent("compat-bare", d, extra_args=["--gateway-listen", "127.0.0.1:0"])
    try:
        refresh_gateway_port(a)
        a.api_key = make_key(a, "bare")
        yield a
    finally:
        stop_agent(a)
        subprocess.run(["rm", "-rf", "--one-file-system", str(d)])


def test_missing_code_interpreter_template(bare_agent):
    key = {"X-API-KEY": bare_agent.api_key}
    r = bare_agent.gateway.post("/sandboxes", {"templateID": "code-interpreter-v1", "timeout": 60},
                                headers=key)
    assert r.status == 404, r
    msg = r.json()["message"]
    assert "template code-interpreter not found" in msg and "code-interpreter-v1" in msg, msg
    assert bare_agent.client.list_ids() == []
    # A name of sandpit's own gets the agent's message alone.
    r = bare_agent.gateway.post("/sandboxes", {"templateID": "nosuch", "timeout": 60}, headers=key)
    assert r.status == 404 and r.json()["message"] == "template nosuch not found", r
