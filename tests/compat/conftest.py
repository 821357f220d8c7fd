"""Fixtures for the E2B SDK compatibility tests: the real `e2b` and
`@e2b/code-interpreter` npm packages, at pinned versions, driving the gateway
of a real agent (`sandpit-agent --standalone --gateway-listen 127.0.0.1:0`)
that runs the `default` template.

The integration suite's fixtures (Agent, the leak check, ...) are reused as
tests/security does; the session's `agent` is overridden with one that serves
the gateway. setup.sh installs the SDKs (idempotent) into
$SANDPIT_COMPAT_DIR (default /var/cache/sandpit/compat), one folder per
release line; each test runs a node script of js/ against each line, pointed
at the gateway with environment variables only (E2B-WIRE §2.7)."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
_spec = importlib.util.spec_from_file_location("sandpit_integration_conftest", _PATH)
_it = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _it
_spec.loader.exec_module(_it)

globals().update({k: v for k, v in vars(_it).items() if not k.startswith("__")})

HERE = Path(__file__).resolve().parent
COMPAT_DIR = Path(os.environ.get("SANDPIT_COMPAT_DIR") or "/var/cache/sandpit/compat")
# The SDK release lines setup.sh installs (folder names under COMPAT_DIR).
SDK_LINES = ["v2.51", "v2.39"]


@pytest.fixture(scope="session")
def sdk_dirs():
    """Installs the SDKs (once) and answers {line: folder with the scripts and node_modules}."""
    if not shutil.which("node"):
        pytest.fail("node is needed for the E2B compatibility tests (mk/deps.sh installs nodejs)",
                    pytrace=False)
    r = subprocess.run(["bash", str(HERE / "setup.sh")], capture_output=True, text=True, timeout=900,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.fail(f"tests/compat/setup.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="sandpit-compat-"))
    dirs = {}
    for line in SDK_LINES:
        d = root / line
        d.mkdir()
        os.symlink(COMPAT_DIR / line / "node_modules", d / "node_modules")
        for f in (HERE / "js").glob("*.mjs"):
            shutil.copy(f, d / f.name)
        dirs[line] = d
    yield dirs
    shutil.rmtree(root, ignore_errors=True)


def refresh_gateway_port(a, timeout=10):
    """Reads the gateway's port from the agent's log (its last start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(r"gateway \(E2B API\) on \S+, tcp port (\d+)", a.log_tail(lines=100000))
        starts = a.log_tail(lines=100000).count("===== test harness: agent start")
        if found and len(found) >= starts:
            a.gateway_port = int(found[-1])
            a.gateway = Client(tcp=("127.0.0.1", a.gateway_port))
            return
        time.sleep(0.05)
    raise RuntimeError("the agent did not say which port its gateway serves")


CLI_BIN = REPO / "build" / "bin" / "sandpit"


def keys_cli(a, *args):
    """`sandpit keys ARGS` on agent a's key file; the CompletedProcess."""
    return subprocess.run([str(CLI_BIN), "keys", "--state-dir", str(a.state_dir), *args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def make_key(a, namespace, name=None):
    """A new API key for namespace on agent a (printed once by the CLI)."""
    r = keys_cli(a, "create", "--namespace", namespace, *(["--name", name] if name else []))
    if r.returncode != 0:
        raise RuntimeError(f"sandpit keys create failed ({r.returncode}): {r.stderr}")
    return r.stdout.strip()


@pytest.fixture(scope="session")
def agent(templates_dir):
    """The session's agent, serving the gateway on a port of its choosing."""
    if not (DEFAULT_TEMPLATES / "default" / "template.json").exists():
        pytest.fail("the `default` template is missing (make rootfs builds it)", pytrace=False)
    # Sandbox.create() of @e2b/code-interpreter asks for code-interpreter-v1.
    if not (DEFAULT_TEMPLATES / "code-interpreter" / "template.json").exists():
        pytest.fail("the `code-interpreter` template is missing (mk/templates.sh code-interpreter "
                    "builds it)", pytrace=False)
    a = start_agent("compat", templates_dir, extra_args=["--gateway-listen", "127.0.0.1:0"])
    try:
        refresh_gateway_port(a)
        # The gateway takes API keys only (--gateway-auth keys, the default):
        # the suite's own, made as a user would.
        a.api_key = make_key(a, "compat")
    except RuntimeError as e:
        stop_agent(a)
        pytest.fail(str(e), pytrace=False)
    yield a
    stop_agent(a)


@pytest.fixture(params=SDK_LINES)
def sdk(request, sdk_dirs, agent):
    """Runs a script of js/ with one SDK release line against the gateway."""
    d = sdk_dirs[request.param]
    url = f"http://127.0.0.1:{agent.gateway_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_KEY=agent.api_key, E2B_API_URL=url, E2B_SANDBOX_URL=url)

    def run(script, *args, timeout=180, key=None):
        """Runs script; key (optional) replaces the suite's API key."""
        e = dict(env, E2B_API_KEY=key) if key is not None else env
        r = subprocess.run(["node", script, *args], cwd=str(d), env=e, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        outs = []
        for l in r.stdout.splitlines():
            if l.startswith("{"):
                try:
                    outs.append(json.loads(l))
                except ValueError:
                    pass
        # What the script made (it says so at once) is the leak check's to verify.
        for o in outs:
            agent.client.created.extend(o.get("created", []))
        out = outs[-1] if outs else {}
        assert r.returncode == 0, f"node {script} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return out

    run.line = request.param
    return run
