"""The `default` template (real Debian rootfs with python3, numpy, pandas,
matplotlib, nodejs). Slow: needs /var/lib/sandpit/templates/default, built by
`make rootfs` (mk/templates.sh default); skipped with the reason when missing."""

import pytest

from conftest import DEFAULT_ROOTFS, need_default_template

pytestmark = pytest.mark.slow


@pytest.fixture
def default_sandbox(make_sandbox):
    need_default_template()
    return make_sandbox(template="default")


def test_default_is_the_default_template(client):
    need_default_template()
    r = client.post("/v1/sandboxes", {})
    assert r.status == 201, r
    assert r.json()["template"] == "default"


def test_python_numpy(client, default_sandbox):
    out = client.sh(default_sandbox["id"],
                    "python3 -c 'import numpy as np; a = np.arange(12).reshape(3, 4); print(int(a.sum()), a.shape)'")
    assert out == "66 (3, 4)\n"


def test_pandas_and_matplotlib(client, default_sandbox):
    sid = default_sandbox["id"]
    out = client.sh(sid, "python3 -c 'import pandas as pd; print(pd.DataFrame({\"a\": [1, 2, 3]})[\"a\"].sum())'")
    assert out == "6\n"
    client.sh(sid, "python3 -c 'import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.savefig(\"/tmp/p.png\")'",
              timeout=120)
    r = client.exec(sid, cmd=["head", "-c", "8", "/tmp/p.png"])
    assert r.stdout_bytes == b"\x89PNG\r\n\x1a\n", r


def test_node(client, default_sandbox):
    assert client.sh(default_sandbox["id"], "node -e 'console.log(6*7)'") == "42\n"


def test_system_writes_vanish_on_delete(client, make_sandbox, unique):
    need_default_template()
    sid = make_sandbox(template="default")["id"]
    mod = f"sandpit_it_{unique}"
    client.sh(sid, f"echo 'VALUE = 42' > /usr/lib/python3/dist-packages/{mod}.py && mkdir -p /opt/x && touch /opt/x/y",
              user="root")
    assert client.sh(sid, f"python3 -c 'import {mod}; print({mod}.VALUE)'") == "42\n"
    assert not (DEFAULT_ROOTFS / "usr/lib/python3/dist-packages" / f"{mod}.py").exists(), "write reached the template"
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    sid2 = make_sandbox(template="default")["id"]
    r = client.exec(sid2, cmd=["python3", "-c", f"import {mod}"])
    assert r.exit_code != 0, f"{mod} survived into a new sandbox: {r}"
    assert client.exec(sid2, cmd=["test", "-e", "/opt/x/y"]).exit_code == 1
