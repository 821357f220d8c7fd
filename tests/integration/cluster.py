"""Which Kubernetes API server the cluster tests talk to.

By default each cluster test module starts the fixture API server
(tests/fixtures/kube-apiserver.py) through test_kube_apiserver.Kube. With
SANDPIT_K8S=real (`make test-k8s` sets it) and KUBEBUILDER_ASSETS naming a
directory with kube-apiserver and kube-controller-manager, they get a
RealKube instead: the same interface (dir, port, token, kubeconfig, ctx,
request/ok/watch/kubectl, proc, alive, stop) on one real control plane
(tests/fixtures/control_plane.py: etcd, kube-apiserver,
kube-controller-manager) started once per session. A RealKube's stop() puts
the cluster back the way it started (the project's CRDs and their objects,
namespaces, leases, events and secrets in `default` deleted, waited for), so
every module finds an empty cluster as it finds a fresh fixture server.

Tests marked `fixture_only` (fault injection through the fixture's /_admin
switches, signals to the fixture process) are deselected on the real server;
tests marked `real_only` (what the fixture does not model: server-side apply,
the garbage collector, an API server restart with etcd kept) are skipped on
the fixture, with the reason."""

import os
import shutil
import ssl
import sys
import time
from pathlib import Path

from conftest import REPO
from test_kube_apiserver import Kube

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from control_plane import ControlPlane, assets_problem  # noqa: E402

REAL = os.environ.get("SANDPIT_K8S") == "real"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_CP = None


def control_plane():
    """The session's real control plane, started on first use."""
    global _CP
    if _CP is None:
        problem = assets_problem(os.environ.get("KUBEBUILDER_ASSETS"))
        if problem:
            raise RuntimeError(problem)
        _CP = ControlPlane(os.environ["KUBEBUILDER_ASSETS"]).start()
    return _CP


def shutdown():
    """End of session (conftest's pytest_sessionfinish): stop it by pid."""
    global _CP
    if _CP is not None:
        _CP.stop()
        _CP = None


def new_kube(tmp):
    """The API server for one test module: a fresh fixture server in TMP, or
    the session's real control plane seen through TMP."""
    return RealKube(tmp, control_plane()) if REAL else Kube(tmp)


class RealKube(Kube):
    real = True

    def __init__(self, tmp, cp):  # noqa: super().__init__ starts a fixture server
        self.cp = cp
        self.dir = Path(tmp)
        self.port, self.token = cp.port, cp.token
        shutil.copy(cp.ca, self.dir / "ca.crt")
        self.kubeconfig = str(self.dir / "kubeconfig")
        shutil.copy(cp.kubeconfig, self.kubeconfig)
        self.kubeconfig_cert = self.kubeconfig
        self.kubeconfig_variants = [self.kubeconfig]
        log = self.dir / "server.log"
        if not log.exists():
            log.symlink_to(os.path.join(cp.dir, "kube-apiserver.log"))
        self.ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))

    @property
    def proc(self):
        return self.cp.apiserver

    def kubectl(self, *args, check=True, input=None, kubeconfig=None):
        p = super().kubectl(*args, check=check, input=input, kubeconfig=kubeconfig)
        # A new CRD is served a moment after it is created (the fixture serves
        # it at once): wait until it is Established, as `helm install` would.
        if p.returncode == 0 and args and args[0] in ("apply", "create") and "customresourcedefinition" in p.stdout:
            super().kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        return p

    def restart(self):
        """Restart kube-apiserver (etcd data kept) and wait for /readyz."""
        self.cp.restart_apiserver()

    def alive(self):
        return self.cp.apiserver.poll() is None

    def stop(self):
        self.reset()

    def reset(self, timeout=90):
        """Delete what tests made: the project's CRDs (their objects' finalizers
        removed first), every namespace but the system ones, and the leases,
        events and secrets in `default`; wait until all of it is gone."""
        if not self.alive():
            self.restart()
        for crd in ("sandboxes.sandpit.dev", "sandboxtemplates.sandpit.dev"):
            plural = crd.split(".")[0]
            st, _, lst = self.request("GET", f"/apis/sandpit.dev/v1alpha1/{plural}")
            for o in (lst or {}).get("items", []) if st == 200 else []:
                md = o["metadata"]
                if md.get("finalizers"):
                    self.request("PATCH", f"/apis/sandpit.dev/v1alpha1/namespaces/{md['namespace']}/{plural}/"
                                 f"{md['name']}", {"metadata": {"finalizers": None}},
                                 ctype="application/merge-patch+json")
        for crd in ("sandboxes.sandpit.dev", "sandboxtemplates.sandpit.dev"):
            self.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
        st, _, nss = self.request("GET", "/api/v1/namespaces")
        mine = [n["metadata"]["name"] for n in nss["items"] if n["metadata"]["name"] not in SYSTEM_NAMESPACES]
        for ns in mine:
            self.request("DELETE", f"/api/v1/namespaces/{ns}")
        for path in ("/apis/coordination.k8s.io/v1/namespaces/default/leases", "/api/v1/namespaces/default/events",
                     "/api/v1/namespaces/default/secrets"):
            self.request("DELETE", path)
        deadline = time.monotonic() + timeout
        while True:
            left = [f"namespace {ns}" for ns in mine if self.request("GET", f"/api/v1/namespaces/{ns}")[0] != 404]
            left += [f"crd {c}" for c in ("sandboxes.sandpit.dev", "sandboxtemplates.sandpit.dev")
                     if self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{c}")[0] != 404]
            if not left:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the real cluster was not reset within {timeout}s: {left} remain")
            time.sleep(0.2)

