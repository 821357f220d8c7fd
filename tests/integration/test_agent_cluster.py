"""The agent's cluster mode (docs/cluster.md): `sandpit-agent --kubeconfig F
--node-name N --listen ... --token-file ...` registers a coordination.k8s.io/v1
Lease `sandpit-agent-N` in sandpit-system, renews it, takes over a stale one,
survives an unreachable API server, keeps serving sandboxes, and deletes the
Lease on SIGTERM. Runs against tests/fixtures/kube-apiserver.py with the real
kubectl."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from cluster import new_kube
from conftest import (AGENT_BIN, AGENTS, Agent, Client, find_free_port, rand_suffix, start_agent, stop_agent,
                      tool_path, wait_for, write_token_file)

KUBECTL = tool_path("kubectl")
NS = "sandpit-system"
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

if not os.path.exists(KUBECTL):
    pytest.skip(f"kubectl is not installed ({KUBECTL}; mk/tools.sh installs it)", allow_module_level=True)
if not shutil.which("openssl"):
    pytest.skip("openssl is not installed (mk/deps.sh installs it)", allow_module_level=True)


class Kube:
    """The API server (cluster.new_kube: the fixture, or the real one with
    SANDPIT_K8S=real) with the Lease helper these tests use."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="sandpit-it-kube-"))
        self.k = new_kube(self.dir)
        self.kubeconfig = self.k.kubeconfig

    @property
    def proc(self):
        return self.k.proc

    def kubectl(self, *args, check=True, stdin=None):
        r = self.k.kubectl(*args, check=False, input=stdin)
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r

    def lease(self, node):
        r = self.kubectl("get", "lease", "-n", NS, f"sandpit-agent-{node}", "-o", "json", check=False)
        if r.returncode != 0:
            assert "NotFound" in r.stderr or "not found" in r.stderr, r.stderr
            return None
        return json.loads(r.stdout)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.k.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def kube():
    k = Kube()
    try:
        k.kubectl("create", "namespace", NS)
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    return write_token_file(tmp_path_factory.mktemp("cluster-token"))


class ClusterAgent(Agent):
    """conftest's Agent, started in cluster mode instead of --standalone."""

    def argv(self):
        return [a for a in super().argv() if a != "--standalone"]


def start_cluster_agent(templates_dir, kube, token_file, node, extra=()):
    port = find_free_port()
    a = start_agent(f"cl-{node}", templates_dir, cls=ClusterAgent, listen=f"127.0.0.1:{port}",
                    token_file=token_file[0],
                    extra_args=["--kubeconfig", kube.kubeconfig, "--node-name", node, "--lease-duration", "3",
                                *extra])
    a.port, a.token, a.node = port, token_file[1], node
    return a


@pytest.fixture
def node():
    return "node-" + rand_suffix(6)


@pytest.fixture
def cluster_agent(templates_dir, kube, token_file, node):
    a = start_cluster_agent(templates_dir, kube, token_file, node,
                            extra=["--capacity-cpu", "2", "--capacity-memory", "1Gi"])
    yield a
    stop_agent(a)


def wait_lease(kube, node, pred=lambda lease: True, timeout=20, what="the Lease"):
    def check():
        lease = kube.lease(node)
        return lease if lease and pred(lease) else None
    return wait_for(check, timeout, interval=0.2, what=what)


def test_lease_has_the_contract_fields(kube, cluster_agent, node):
    lease = wait_lease(kube, node)
    meta, spec = lease["metadata"], lease["spec"]
    assert lease["apiVersion"] == "coordination.k8s.io/v1" and lease["kind"] == "Lease"
    assert meta["name"] == f"sandpit-agent-{node}" and meta["namespace"] == NS
    assert meta["labels"] == {"app.kubernetes.io/component": "sandpit-agent", "sandpit.dev/node": node}
    version = cluster_agent.client.get("/v1/info").json()["version"]
    assert meta["annotations"] == {
        "sandpit.dev/endpoint": f"http://127.0.0.1:{cluster_agent.port}",
        "sandpit.dev/capacity-cpu": "2",
        "sandpit.dev/capacity-memory": str(1 << 30),
        "sandpit.dev/version": version,
    }
    assert spec["holderIdentity"] == node
    assert spec["leaseDurationSeconds"] == 3
    assert MICROTIME.match(spec["acquireTime"]), spec
    assert MICROTIME.match(spec["renewTime"]), spec
    # the advertised endpoint is the agent's API, behind the bearer token
    c = Client(tcp=("127.0.0.1", cluster_agent.port), token=cluster_agent.token)
    assert c.get("/healthz").status == 200
    assert Client(tcp=("127.0.0.1", cluster_agent.port), token=None).get("/v1/sandboxes").status == 401


def test_defaults_are_nproc_memtotal_and_30s(kube, templates_dir, token_file, node):
    port = find_free_port()
    a = ClusterAgent(f"cl-{node}", templates_dir, listen=f"127.0.0.1:{port}", token_file=token_file[0],
                     extra_args=["--kubeconfig", kube.kubeconfig, "--node-name", node,
                                 "--advertise", "http://198.18.0.1:7443/"])
    AGENTS.append(a)
    try:
        a.start()
        lease = wait_lease(kube, node)
        ann = lease["metadata"]["annotations"]
        assert ann["sandpit.dev/endpoint"] == "http://198.18.0.1:7443"
        assert ann["sandpit.dev/capacity-cpu"] == str(os.cpu_count())
        memtotal = int(re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text()).group(1)) * 1024
        assert ann["sandpit.dev/capacity-memory"] == str(memtotal)
        assert lease["spec"]["leaseDurationSeconds"] == 30
    finally:
        stop_agent(a)


def test_renew_time_advances(kube, cluster_agent, node):
    first = wait_lease(kube, node)
    t0, rv0 = first["spec"]["renewTime"], first["metadata"]["resourceVersion"]
    later = wait_lease(kube, node, lambda lease: lease["spec"]["renewTime"] > t0, what="a renewal")
    assert later["metadata"]["uid"] == first["metadata"]["uid"]
    assert int(later["metadata"]["resourceVersion"]) > int(rv0)
    assert later["spec"]["acquireTime"] == first["spec"]["acquireTime"]


def test_stale_lease_is_taken_over(kube, templates_dir, token_file, node):
    old = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": f"sandpit-agent-{node}", "namespace": NS,
                     "annotations": {"sandpit.dev/endpoint": "http://198.18.0.9:1"}},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 30,
                 "acquireTime": "2020-01-01T00:00:00.000000Z", "renewTime": "2020-01-01T00:00:00.000000Z"},
    }
    kube.kubectl("create", "-f", "-", stdin=json.dumps(old))
    uid = kube.lease(node)["metadata"]["uid"]
    a = start_cluster_agent(templates_dir, kube, token_file, node)
    try:
        lease = wait_lease(kube, node, lambda lease: lease["spec"]["holderIdentity"] == node, what="the take-over")
        assert lease["metadata"]["uid"] == uid  # updated in place, not deleted and recreated
        assert lease["metadata"]["annotations"]["sandpit.dev/endpoint"] == f"http://127.0.0.1:{a.port}"
        assert lease["spec"]["renewTime"] > "2020-01-01T00:00:00.000000Z"
        assert lease["spec"]["acquireTime"] > "2020-01-01T00:00:00.000000Z"
        assert lease["spec"]["leaseTransitions"] == 1
        assert lease["spec"]["leaseDurationSeconds"] == 3
    finally:
        stop_agent(a)
    assert kube.lease(node) is None


def test_conflicting_writer_is_survived(kube, cluster_agent, node):
    """Someone else writes the Lease (the agent's resourceVersion goes stale):
    the agent's next update is a 409, it re-reads and keeps renewing."""
    lease = wait_lease(kube, node)
    kube.kubectl("annotate", "lease", "-n", NS, f"sandpit-agent-{node}", "example.com/touched=yes")
    touched = kube.lease(node)
    t = touched["spec"]["renewTime"]
    later = wait_lease(kube, node, lambda lease: lease["spec"]["renewTime"] > t, what="a renewal after a conflict")
    assert later["metadata"]["uid"] == lease["metadata"]["uid"]
    assert later["metadata"]["annotations"]["example.com/touched"] == "yes"
    assert cluster_agent.alive()


def test_serves_sandboxes_while_registered(kube, cluster_agent, node):
    t0 = wait_lease(kube, node)["spec"]["renewTime"]
    c = Client(tcp=("127.0.0.1", cluster_agent.port), token=cluster_agent.token)
    c.created = cluster_agent.client.created  # the leak check deletes what this creates
    sid = c.create()["id"]
    r = c.exec(sid, shell="echo from-cluster-mode")
    assert r.exit_code == 0 and r.stdout == "from-cluster-mode\n", r
    wait_lease(kube, node, lambda lease: lease["spec"]["renewTime"] > t0, what="a renewal while serving")
    assert c.delete(f"/v1/sandboxes/{sid}").status == 204
    assert cluster_agent.leftovers([sid], zombies=False) == []


def test_unreachable_api_server_is_survived(kube, cluster_agent, node):
    before = wait_lease(kube, node)["spec"]["renewTime"]
    log_from = cluster_agent.log_size()
    os.kill(kube.proc.pid, signal.SIGSTOP)  # connections hang: the API is unreachable
    try:
        wait_for(lambda: "cannot renew Lease" in cluster_agent.log_tail(since=log_from), 30, interval=0.2,
                 what="the agent noticing the API is gone")
        assert cluster_agent.alive()
        assert cluster_agent.client.get("/healthz").status == 200
        assert cluster_agent.client.get("/v1/sandboxes").status == 200
    finally:
        os.kill(kube.proc.pid, signal.SIGCONT)
    lease = wait_lease(kube, node, lambda lease: lease["spec"]["renewTime"] > before, timeout=30,
                       what="a renewal after the API came back")
    assert lease["spec"]["holderIdentity"] == node
    wait_for(lambda: "renewed again" in cluster_agent.log_tail(since=log_from), 30, what="the recovery log line")
    assert cluster_agent.alive()


def test_sigterm_deletes_the_lease(kube, templates_dir, token_file, node):
    a = start_cluster_agent(templates_dir, kube, token_file, node)
    try:
        wait_lease(kube, node)
        assert a.signal_and_wait(signal.SIGTERM) == 0
        assert kube.lease(node) is None
        assert "deregistered" in a.log_tail()
    finally:
        stop_agent(a)


def run_agent(*args):
    return subprocess.run([str(AGENT_BIN), *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("case,args,words", [
    ("no node name", ["--kubeconfig", "{kc}", "--listen", "127.0.0.1:0", "--token-file", "{tf}"], "--node-name"),
    ("no listen", ["--kubeconfig", "{kc}", "--node-name", "n1", "--token-file", "{tf}"], "--listen"),
    ("no token", ["--kubeconfig", "{kc}", "--node-name", "n1", "--listen", "127.0.0.1:0"], "--token-file"),
    ("missing kubeconfig", ["--kubeconfig", "{dir}/nope", "--node-name", "n1", "--listen", "127.0.0.1:0",
                            "--token-file", "{tf}"], "kubeconfig"),
    ("garbage kubeconfig", ["--kubeconfig", "{dir}/garbage", "--node-name", "n1", "--listen", "127.0.0.1:0",
                            "--token-file", "{tf}"], "kubeconfig"),
    ("unknown context", ["--kubeconfig", "{kc}", "--context", "nope", "--node-name", "n1", "--listen",
                         "127.0.0.1:0", "--token-file", "{tf}"], "nope"),
    ("both modes", ["--standalone", "--kubeconfig", "{kc}", "--node-name", "n1", "--listen", "127.0.0.1:0",
                    "--token-file", "{tf}"], "--standalone"),
    ("no mode", [], "--standalone"),
    ("cluster flag in standalone", ["--standalone", "--node-name", "n1"], "cluster"),
    ("bad node name", ["--kubeconfig", "{kc}", "--node-name", "N/../x", "--listen", "127.0.0.1:0",
                       "--token-file", "{tf}"], "--node-name"),
    ("bad lease duration", ["--kubeconfig", "{kc}", "--node-name", "n1", "--listen", "127.0.0.1:0",
                            "--token-file", "{tf}", "--lease-duration", "0"], "--lease-duration"),
    ("bad capacity", ["--kubeconfig", "{kc}", "--node-name", "n1", "--listen", "127.0.0.1:0",
                      "--token-file", "{tf}", "--capacity-memory", "lots"], "--capacity-memory"),
    ("wildcard listen", ["--kubeconfig", "{kc}", "--node-name", "n1", "--listen", "0.0.0.0:0",
                         "--token-file", "{tf}"], "--advertise"),
    ("bad advertise", ["--kubeconfig", "{kc}", "--node-name", "n1", "--listen", "127.0.0.1:0",
                       "--token-file", "{tf}", "--advertise", "ftp://x"], "--advertise"),
])
def test_bad_flags_exit_with_one_line(kube, token_file, tmp_path, case, args, words):
    (tmp_path / "garbage").write_text("{{{ this: [is not yaml\n")
    state = tmp_path / "state"
    argv = [x.format(kc=kube.kubeconfig, tf=token_file[0], dir=tmp_path) for x in args]
    r = run_agent(*argv, "--state-dir", str(state), "--socket", str(tmp_path / "a.sock"))
    assert r.returncode != 0, (case, r)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, (case, r.stderr)
    assert lines[0].startswith("sandpit-agent: ") and words in lines[0], (case, lines)
    assert not state.exists() and not (tmp_path / "a.sock").exists()  # nothing was started
