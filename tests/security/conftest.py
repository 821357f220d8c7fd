"""Fixtures for the security tests: the integration suite's, reused as they are.

tests/integration/conftest.py is loaded under its own module name and its
fixtures, hooks and helpers are re-exported from here, so a test module in this
directory can ask for `agent`, `client`, `make_sandbox`, ... and import helpers
with `from conftest import wait_for` exactly as the integration tests do. This
directory runs as its own pytest session (tests/run-all.sh), so its agents get
their own cgroup parent and state."""

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
_spec = importlib.util.spec_from_file_location("sandpit_integration_conftest", _PATH)
_it = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _it
_spec.loader.exec_module(_it)

globals().update({k: v for k, v in vars(_it).items() if not k.startswith("__")})


def status_kb(pid, key):
    """A /proc/PID/status value in kB (VmHWM, VmRSS, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


class Peak:
    """A process's peak RSS growth over a block: VmHWM is reset to the current
    RSS first (clear_refs 5, Linux >= 4.0), so the peak measured is the block's."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")
        self.before = status_kb(self.pid, "VmHWM")
        return self

    def __exit__(self, *exc):
        self.grew_kb = status_kb(self.pid, "VmHWM") - self.before
