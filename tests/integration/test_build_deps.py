"""The install step covers the build: mk/check-deps.py maps every header, pkg-config
module, library and command the project uses to its Debian package and checks that
mk/deps.sh installs it (directly or as a dependency). A fresh machine runs the install
step once, so anything it misses fails there and nowhere else."""

import re
import subprocess
import sys

from conftest import REPO

CHECK = REPO / "mk" / "check-deps.py"


def run_check(*args):
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True,
                          timeout=300)


def test_deps_sh_covers_the_build():
    r = run_check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all come from" in r.stdout


def test_a_package_left_out_of_deps_sh_is_found(tmp_path):
    """The check can fail: deps.sh without libnl's and pytest's packages is caught, with
    what needs them."""
    text = (REPO / "mk" / "deps.sh").read_text()
    for name in ("libnl-3-dev", "libnl-route-3-dev", "python3-pytest"):
        assert re.search(rf"(?m)\s{re.escape(name)}(\s|$)", text), name
        text = re.sub(rf"(?m)(\s){re.escape(name)}(?=\s|$)", r"\1", text)
    partial = tmp_path / "deps.sh"
    partial.write_text(text)
    r = run_check("--deps", str(partial))
    assert r.returncode == 1, r.stdout
    assert re.search(r"header included by node-agent/src/net-link\.c: /usr/include/libnl3/\S+ "
                     r"comes from libnl-3-dev", r.stdout), r.stdout
    assert "pkg-config module libnl-route-3.0" in r.stdout, r.stdout
    assert "python module pytest" in r.stdout, r.stdout

