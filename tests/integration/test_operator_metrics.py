"""The operator's /metrics (Prometheus text 0.0.4, docs/operator.md "Metrics"),
against the same fixtures as test_operator: the fixture API server, a real
agent with its Lease, the real operator. The exposition is parsed strictly
(every line, HELP/TYPE before samples, cumulative histogram buckets) and the
numbers are checked to move as Sandboxes are applied and deleted."""

import math
import time
import re
import urllib.request

from conftest import wait_for
from test_operator import (  # noqa: F401 (fixtures)
    condition, delete_and_prove_gone, get_sbx, kube, lease, manifest, node, operator, operator_alive,
    set_capacity, wait_ready)

PHASES = ["Pending", "Running", "Paused", "Expired", "Failed"]
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")
COMMENT = re.compile(rf"^# (HELP|TYPE) ({NAME}) (.+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").lower())
    return float(text)  # raises on anything else


def parse(text):
    """{family: {"help", "type", "samples": [(name, {label: value}, float)]}}, asserting the
    format: every line a comment or a sample, HELP and TYPE once per family and before its
    samples, sample names belonging to their family (with _bucket/_sum/_count for histograms)."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    fams, current = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        m = COMMENT.match(line)
        if m:
            kind, name, rest = m.groups()
            f = fams.setdefault(name, {"help": None, "type": None, "samples": []})
            assert f[kind.lower()] is None, f"line {n}: second {kind} for {name}"
            assert not f["samples"], f"line {n}: {kind} after samples of {name}"
            if kind == "TYPE":
                assert rest in TYPES, f"line {n}: bad type {rest!r}"
            f[kind.lower()] = rest
            current = name
            continue
        m = SAMPLE.match(line)
        assert m, f"line {n} is not well-formed: {line!r}"
        name, labels, v = m.groups()
        fam = current
        suffixes = ("_bucket", "_sum", "_count") if fams[fam]["type"] == "histogram" else ("",)
        assert any(name == fam + s for s in suffixes), f"line {n}: {name} outside its family {fam}"
        lab = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
        fams[fam]["samples"].append((name, lab, value(v)))
    for name, f in fams.items():
        assert f["help"] and f["type"], f"{name} lacks HELP or TYPE"
        assert f["samples"], f"{name} has no samples"
        if f["type"] == "histogram":
            check_histogram(name, f["samples"])
        if f["type"] == "counter":
            assert all(v >= 0 for _, _, v in f["samples"]), name
    return fams


def check_histogram(name, samples):
    buckets = [(lab["le"], v) for n, lab, v in samples if n == name + "_bucket"]
    assert buckets and buckets[-1][0] == "+Inf", f"{name}: the last bucket must be +Inf"
    les = [value(le) for le, _ in buckets]
    assert les == sorted(les) and len(set(les)) == len(les), f"{name}: bounds not ascending: {les}"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"{name}: buckets not cumulative: {counts}"
    count = [v for n, _, v in samples if n == name + "_count"]
    total = [v for n, _, v in samples if n == name + "_sum"]
    assert len(count) == 1 and len(total) == 1, f"{name}: one _sum and one _count"
    assert counts[-1] == count[0], f"{name}: +Inf bucket {counts[-1]} != count {count[0]}"
    assert total[0] >= 0 and math.isfinite(total[0])


def scrape(op):
    with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/metrics", timeout=5) as r:
        assert r.status == 200
        ctype = r.headers["Content-Type"]
        assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
        return parse(r.read().decode())


def sample(fams, family, name=None, **labels):
    got = [v for n, lab, v in fams[family]["samples"]
           if n == (name or family) and all(lab.get(k) == w for k, w in labels.items())]
    assert len(got) == 1, f"{family}{labels}: {len(got)} samples"
    return got[0]


def results(fams):
    return {r: sample(fams, "sandpit_operator_reconciles_total", result=r) for r in ("success", "requeue", "error")}


def phase_count(op, phase):
    return sample(scrape(op), "sandpit_operator_sandboxes", phase=phase)


def test_exposition_is_well_formed(operator):
    fams = scrape(operator)
    want = {"sandpit_operator_reconciles_total": "counter",
            "sandpit_operator_reconcile_duration_seconds": "histogram",
            "sandpit_operator_workqueue_depth": "gauge",
            "sandpit_operator_sandboxes": "gauge",
            "sandpit_operator_build_info": "gauge",
            "sandpit_operator_leader": "gauge",
            "sandpit_operator_orphan_resync_passes_total": "counter",
            "sandpit_operator_orphans_removed_total": "counter",
            "process_start_time_seconds": "gauge"}
    for name, typ in want.items():
        assert fams.get(name, {}).get("type") == typ, f"{name} missing or not a {typ}"
    # Every phase the operator writes is present, zero or not, so dashboards keep their series.
    got = {lab["phase"] for _, lab, _ in fams["sandpit_operator_sandboxes"]["samples"]}
    assert set(PHASES) <= got, got
    assert set(results(fams)) == {"success", "requeue", "error"}
    assert sample(fams, "sandpit_operator_informer_synced", resource="sandboxes") == 1
    assert sample(fams, "sandpit_operator_workqueue_depth") >= 0
    # the only replica leads, once its elector has taken the Lease (on a real
    # server that can come after /readyz)
    wait_for(lambda: sample(scrape(operator), "sandpit_operator_leader") == 1, 30, interval=0.2,
             what="sandpit_operator_leader 1")
    ver = [lab["version"] for _, lab, _ in fams["sandpit_operator_build_info"]["samples"]]
    assert ver and re.fullmatch(r"\d+\.\d+\.\d+.*", ver[0]), ver
    assert 0 < sample(fams, "process_start_time_seconds") <= time.time()


def test_not_a_post_target(operator):
    req = urllib.request.Request(f"http://127.0.0.1:{operator.health_port}/metrics", data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("POST /metrics succeeded")
    except urllib.error.HTTPError as e:
        assert e.code in (405, 413), e.code


def test_counts_move_with_a_sandbox(kube, node, operator):
    before = scrape(operator)
    r0 = results(before)
    d0 = sample(before, "sandpit_operator_reconcile_duration_seconds", "sandpit_operator_reconcile_duration_seconds_count")
    assert sample(before, "sandpit_operator_sandboxes", phase="Running") == 0
    kube.kubectl("apply", "-f", "-", input=manifest("metered", cpu="100m", memory="64Mi"))
    try:
        wait_ready(kube, "metered")
        # The operator's cache sees the Running status it wrote a moment after kubectl does.
        wait_for(lambda: phase_count(operator, "Running") == 1, 30, what="sandboxes{phase=Running} == 1")
        after = scrape(operator)
        r1 = results(after)
        assert r1["success"] > r0["success"], (r0, r1)
        d1 = sample(after, "sandpit_operator_reconcile_duration_seconds",
                    "sandpit_operator_reconcile_duration_seconds_count")
        assert d1 >= d0 + 2, (d0, d1)  # at least the placement and the create
        assert d1 == sum(r1.values()), "every reconcile is timed once"
        assert sample(after, "sandpit_operator_sandboxes", phase="Pending") == 0
    finally:
        delete_and_prove_gone(kube, node, "metered")
    wait_for(lambda: phase_count(operator, "Running") == 0, 30, what="sandboxes{phase=Running} == 0")
    assert sum(v for _, _, v in scrape(operator)["sandpit_operator_sandboxes"]["samples"]) == 0


def test_unschedulable_counts_as_error(kube, node, operator):
    """reconcile_sandbox() returns an error for a Sandbox no agent has room for (it is retried
    with backoff), so it shows as result="error" and stays Pending."""
    r0 = results(scrape(operator))
    set_capacity(kube, "0.25")
    try:
        kube.kubectl("apply", "-f", "-", input=manifest("toobig", cpu="1"))
        wait_for(lambda: (condition(get_sbx(kube, "toobig"), "Ready") or {}).get("reason") == "Unschedulable", 30,
                 what="Ready=False Unschedulable")
        wait_for(lambda: results(scrape(operator))["error"] > r0["error"], 30, what="an error result")
        wait_for(lambda: phase_count(operator, "Pending") == 1, 30, what="sandboxes{phase=Pending} == 1")
        assert phase_count(operator, "Running") == 0
    finally:
        set_capacity(kube, "2")
    wait_ready(kube, "toobig")
    delete_and_prove_gone(kube, node, "toobig")
    wait_for(lambda: phase_count(operator, "Pending") == 0, 30, what="sandboxes{phase=Pending} == 0")

