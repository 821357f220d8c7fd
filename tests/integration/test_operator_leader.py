"""Leader election of sandpit-operator (docs/operator.md, "Leader election"):
two operators with one leader, failover when the leader is killed, a leader
that loses its Lease stops reconciling at once (and stands by), SIGTERM
releases the Lease, bad flag values.

The fixtures come from test_operator: the fixture API server driven by real
kubectl, a standalone agent on TCP (conftest's leak check covers it) and its
registration Lease. Every test deletes what it applied and stops the
operators it started (by their Popen handle, i.e. by pid)."""

import re
import signal
import subprocess
import urllib.request

import pytest

from conftest import find_free_port, wait_for
from test_operator import (LEASE, OP_NS, OPERATOR_BIN, Operator, delete_and_prove_gone, get_sbx, kube,  # noqa: F401
                           lease, manifest, micro_time, node, wait_ready)

LEADER_LEASE = f"{LEASE}/sandpit-operator"
# small values so that a failover takes seconds
FAST = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "0.5s"]


def scrape_leader(op):
    """sandpit_operator_leader from the operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^sandpit_operator_leader (\S+)$", text, re.M)
    assert m, text
    return float(m.group(1))


def op_metric(op, name, **labels):
    """The sum of the samples of metric NAME (with LABELS) on op's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split(" ", 1)[0].split("{", 1)[0] == name and all(w in line for w in want))


# A Lease request answered (debug log): a standby tries for the Lease every retry period.
LEASE_TRY = re.compile(r"k8s (?:GET|PUT|PATCH) /apis/coordination\.k8s\.io/\S+/leases/sandpit-operator: \d{3}$",
                       re.M)


class ElectedOperator(Operator):
    """test_operator's Operator with an identity and the election flags."""

    def __init__(self, kube, node, tmp, identity, flags=FAST):  # noqa: F811 (kube, node are not fixtures here)
        self.identity = identity
        self.health_port = find_free_port()
        self.log = tmp / f"operator-{identity}.log"
        argv = [str(OPERATOR_BIN), "--kubeconfig", kube.kubeconfig, "--agent-token-file", str(node.token_file),
                "--agent-insecure-http",  # the test agents serve plain HTTP on loopback
                "--namespace", OP_NS, "--health-listen", f"127.0.0.1:{self.health_port}", "--workers", "2",
                "--resync-seconds", "2", "--log-format", "text", "--log-level", "debug",
                "--identity", identity, *flags]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)

    def text(self):
        return self.log.read_text()


def holder(kube):
    st, _, obj = kube.request("GET", LEADER_LEASE)
    return obj["spec"].get("holderIdentity") if st == 200 else None


def leader_lease(kube):
    return kube.ok("GET", LEADER_LEASE, want=(200,))


@pytest.fixture
def start(kube, node, lease, tmp_path):  # noqa: F811
    """start(identity, flags=FAST, wait_ready=True) starts an operator; all are
    stopped at the end (SIGTERM, SIGKILL if that does not work)."""
    if not OPERATOR_BIN.exists():
        pytest.fail(f"{OPERATOR_BIN} does not exist: build it first (make all)", pytrace=False)
    kube.request("DELETE", LEADER_LEASE)
    started = []

    def _start(identity, flags=FAST, ready=True):
        op = ElectedOperator(kube, node, tmp_path, identity, flags)
        started.append(op)
        if ready:
            wait_for(lambda: op.proc.poll() is not None or op.probe("/readyz") == 200, 30,
                     what=f"{identity} /readyz")
            assert op.proc.poll() is None, f"{identity} exited at start:\n" + op.log_tail()
        return op

    yield _start
    for op in started:
        if op.proc.poll() is None:
            op.stop()
        assert node.token not in op.text(), "the agent token was logged"
    kube.request("DELETE", LEADER_LEASE)


# What only reconciling does (the operator runs with --log-level debug, which
# logs every request): a write to a Sandbox or an Event, a direct read of one
# Sandbox, or any call to an agent. Informers' lists and watches are reads of
# whole collections and do not match.
ACTION = re.compile(r"k8s (PATCH|PUT|POST|DELETE) /apis/(sandpit\.dev|events\.k8s\.io)/"
                    r"|k8s GET /apis/sandpit\.dev/v1alpha1/namespaces/"
                    r"| http (GET|POST|PUT|DELETE) ")


ANSWER = re.compile(r": \d{3}$")  # the answer to a request begun earlier


def actions(text):
    """Requests begun (not answers) that only reconciling makes."""
    return [line for line in text.splitlines() if ACTION.search(line) and not ANSWER.search(line)]


def reconciled(op, name):
    """Lines of op's log about reconciling Sandbox default/NAME."""
    return [line for line in op.text().splitlines() if f"Sandbox default/{name}" in line]


def test_two_operators_one_leader(kube, node, start):  # noqa: F811
    a = start("op-a")
    wait_for(lambda: holder(kube) == "op-a", 30, what="op-a holds the Lease")
    b = start("op-b")
    # the standby is ready too (its caches are warm): readiness is not leadership
    assert b.probe("/readyz") == 200 and b.probe("/healthz") == 200
    wait_for(lambda: "standing by: Lease sandpit-system/sandpit-operator is held by op-a" in b.text(), 30,
             what="op-b standing by")
    spec = leader_lease(kube)["spec"]
    assert spec["holderIdentity"] == "op-a" and spec["leaseDurationSeconds"] == 3
    assert spec["acquireTime"] and spec["renewTime"] and spec.get("leaseTransitions", 0) == 0
    assert "became the leader" in a.text() and "became the leader" not in b.text()
    # the leader gauge says the same
    assert scrape_leader(a) == 1 and scrape_leader(b) == 0

    kube.kubectl("apply", "-f", "-", input=manifest("one-leader"))
    obj = wait_ready(kube, "one-leader")
    assert any("running on" in line for line in reconciled(a, "one-leader")), a.log_tail()
    delete_and_prove_gone(kube, node, "one-leader")
    assert any("finalizer removed" in line for line in reconciled(a, "one-leader")), a.log_tail()
    # the standby reconciled nothing: no write, no agent call (the check can fail: see the leader's)
    assert actions(a.text()), a.log_tail()
    assert actions(b.text()) == [], b.log_tail()
    assert holder(kube) == "op-a"
    assert obj["status"]["nodeName"] == "node-a"
    assert a.stop() == 0 and b.stop() == 0


def test_failover_when_the_leader_is_killed(kube, node, start):  # noqa: F811
    a = start("op-a")
    wait_for(lambda: holder(kube) == "op-a", 30, what="op-a holds the Lease")
    b = start("op-b")
    kube.kubectl("apply", "-f", "-", input=manifest("before-kill"))
    wait_ready(kube, "before-kill")
    transitions = leader_lease(kube)["spec"].get("leaseTransitions", 0)

    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    # no release: op-b takes over once the Lease stopped changing for its duration
    wait_for(lambda: holder(kube) == "op-b", 30, what="op-b takes the Lease")
    assert leader_lease(kube)["spec"]["leaseTransitions"] == transitions + 1
    wait_for(lambda: "became the leader" in b.text(), 10, what="op-b logs its leadership")

    kube.kubectl("apply", "-f", "-", input=manifest("after-kill"))
    obj = wait_ready(kube, "after-kill")
    assert obj["status"]["nodeName"] == "node-a"
    assert any("running on" in line for line in reconciled(b, "after-kill")), b.log_tail()
    # the object made by the dead leader goes through the finalizer on the new one
    delete_and_prove_gone(kube, node, "before-kill")
    assert any("finalizer removed" in line for line in reconciled(b, "before-kill")), b.log_tail()
    delete_and_prove_gone(kube, node, "after-kill")
    assert node.api.list_ids() == []
    assert b.stop() == 0


def test_a_leader_that_loses_the_lease_stops_at_once(kube, node, start):  # noqa: F811
    a = start("op-a")
    wait_for(lambda: holder(kube) == "op-a", 30, what="op-a holds the Lease")
    kube.kubectl("apply", "-f", "-", input=manifest("kept"))
    kept = wait_ready(kube, "kept")
    transitions = leader_lease(kube)["spec"].get("leaseTransitions", 0)

    # someone else takes the Lease (a partitioned leader's successor, say)
    kube.ok("PATCH", LEADER_LEASE, {"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
                                             "renewTime": micro_time()}},
            ctype="application/merge-patch+json")
    wait_for(lambda: "lost the leader Lease sandpit-system/sandpit-operator to intruder" in a.text(), 30,
             what="op-a notices it lost the Lease")
    assert holder(kube) == "intruder", "the deposed leader wrote the Lease back"
    # it stands by: alive, healthy, ready, but acting on nothing
    assert a.proc.poll() is None and a.probe("/readyz") == 200
    lost_at = len(a.text())
    events0, reconciles0 = op_metric(a, "sandpit_operator_informer_events_total", resource="sandboxes"), \
        op_metric(a, "sandpit_operator_reconciles_total")
    kube.kubectl("apply", "-f", "-", input=manifest("unowned"))
    # op-a saw the object and its key waits, ready, in the queue: a leader's idle
    # worker would take it at once
    wait_for(lambda: op_metric(a, "sandpit_operator_informer_events_total", resource="sandboxes") > events0
             and op_metric(a, "sandpit_operator_workqueue_depth") >= 1, 30, what="op-a to queue the new object")
    # ... and it stays there while op-a tries for the Lease four more times (retry period 0.5 s)
    tries_at = len(a.text())
    wait_for(lambda: len(LEASE_TRY.findall(a.text()[tries_at:])) >= 4, 30, what="four Lease attempts by op-a")
    assert op_metric(a, "sandpit_operator_workqueue_depth") >= 1, "a standby worker took a key"
    assert op_metric(a, "sandpit_operator_reconciles_total") == reconciles0
    obj = get_sbx(kube, "unowned")
    assert "finalizers" not in obj["metadata"] and "status" not in obj, obj
    assert node.api.list_ids() == [kept["status"]["sandboxID"]]
    after = a.text()[lost_at:]
    assert actions(after) == [], after[-4000:]
    assert holder(kube) == "intruder"

    # the intruder lets go: op-a leads again and catches up on what it skipped
    kube.ok("PATCH", LEADER_LEASE, {"spec": {"holderIdentity": ""}}, ctype="application/merge-patch+json")
    wait_for(lambda: holder(kube) == "op-a", 30, what="op-a takes the Lease again")
    assert leader_lease(kube)["spec"]["leaseTransitions"] == transitions + 1
    obj = wait_ready(kube, "unowned")
    assert obj["status"]["nodeName"] == "node-a"
    assert a.text().count("became the leader") == 2
    # nothing between losing the Lease and leading again
    text = a.text()
    lost = text.index("lost the leader Lease")
    assert actions(text[lost:text.index("became the leader", lost)]) == []
    delete_and_prove_gone(kube, node, "unowned")
    delete_and_prove_gone(kube, node, "kept")
    assert a.stop() == 0


def test_renewals_failing_for_the_renew_deadline_end_leadership(kube, node, start):  # noqa: F811
    a = start("op-a")
    wait_for(lambda: holder(kube) == "op-a", 30, what="op-a holds the Lease")
    # the API server stops answering (SIGSTOP on the fixture server this module started)
    kube.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: "not renewed for 2000 ms: stopped reconciling" in a.text(), 30,
                 what="op-a gives up leading after the renew deadline")
    finally:
        kube.proc.send_signal(signal.SIGCONT)
    assert a.proc.poll() is None
    # the Lease still names op-a (nobody took it): it renews it and leads again
    wait_for(lambda: a.text().count("became the leader") == 2, 30, what="op-a leads again")
    text = a.text()
    lost = text.index("not renewed for")
    assert actions(text[lost:text.index("became the leader", lost)]) == []
    kube.kubectl("apply", "-f", "-", input=manifest("after-outage"))
    wait_ready(kube, "after-outage")
    delete_and_prove_gone(kube, node, "after-outage")
    assert a.stop() == 0


def test_sigterm_releases_the_lease(kube, node, start):  # noqa: F811
    # a long Lease: if op-b takes over within the wait below, it was the release,
    # not an expiry (60 s)
    slow = ["--lease-duration", "60s", "--renew-deadline", "40s", "--retry-period", "0.5s"]
    a = start("op-a", slow)
    wait_for(lambda: holder(kube) == "op-a", 30, what="op-a holds the Lease")
    b = start("op-b", slow)
    wait_for(lambda: "standing by" in b.text(), 30, what="op-b standing by")
    transitions = leader_lease(kube)["spec"].get("leaseTransitions", 0)
    assert a.stop() == 0
    assert "released the leader Lease sandpit-system/sandpit-operator" in a.text(), a.log_tail()
    wait_for(lambda: holder(kube) == "op-b", 30, what="op-b takes the released Lease")
    assert leader_lease(kube)["spec"]["leaseTransitions"] == transitions + 1
    kube.kubectl("apply", "-f", "-", input=manifest("after-release"))
    wait_ready(kube, "after-release")
    delete_and_prove_gone(kube, node, "after-release")
    assert b.stop() == 0
    assert "released the leader Lease" in b.text()  # b was the leader by then


def test_standby_stops_without_touching_the_lease(kube, node, start):  # noqa: F811
    a = start("op-a")
    wait_for(lambda: holder(kube) == "op-a", 30, what="op-a holds the Lease")
    b = start("op-b")
    wait_for(lambda: "standing by" in b.text(), 30, what="op-b standing by")
    assert b.stop() == 0
    assert "released the leader Lease" not in b.text()
    assert holder(kube) == "op-a"
    assert a.stop() == 0
    assert "released the leader Lease" in a.text()
    assert holder(kube) == ""


def test_without_leader_election(kube, node, start):  # noqa: F811
    a = start("solo", ["--leader-elect=false"])
    kube.kubectl("apply", "-f", "-", input=manifest("solo"))
    wait_ready(kube, "solo")
    delete_and_prove_gone(kube, node, "solo")
    st, _, _ = kube.request("GET", LEADER_LEASE)
    assert st == 404, "the operator wrote a leader Lease with --leader-elect=false"
    assert "leader election" not in a.text() and "became the leader" not in a.text()
    assert a.stop() == 0


@pytest.mark.parametrize("flags, word", [
    (["--lease-duration", "3s", "--renew-deadline", "3s"], "--renew-deadline"),
    (["--renew-deadline", "2s", "--retry-period", "2s", "--lease-duration", "3s"], "--retry-period"),
    (["--retry-period", "soon"], "--retry-period"),
    (["--lease-duration", "-1s"], "--lease-duration"),
    (["--lease-duration", "500ms", "--renew-deadline", "400ms", "--retry-period", "100ms"], "--lease-duration"),
    (["--leader-elect=maybe"], "--leader-elect"),
    (["--leader-election-id", "Not/A/Name"], "--leader-election-id"),
    (["--identity", ""], "--identity"),
])
def test_bad_flag_values(kube, node, flags, word):  # noqa: F811
    p = subprocess.run([str(OPERATOR_BIN), "--kubeconfig", kube.kubeconfig, "--agent-token-file",
                        str(node.token_file), *flags], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], p.stderr
    assert p.stdout == ""


def test_help_lists_the_election_flags():
    p = subprocess.run([str(OPERATOR_BIN), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    for flag in ("--leader-elect", "--no-leader-elect", "--leader-election-id", "--identity",
                 "--lease-duration", "--renew-deadline", "--retry-period"):
        assert flag in p.stdout, flag
