"""Metrics: the current sample of a sandbox, the ring of 1 s samples asked as a
window (?start=&end=), and the node's Prometheus exposition at /metrics."""

import os
import re
import time
from datetime import datetime

from conftest import assert_error, wait_for

SAMPLE_FIELDS = {"timestamp", "timestamp_unix", "cpu_count", "cpu_used_pct", "cpu_used_cores",
                 "cpu_usage_ns", "cpu_host_pct", "memory_used", "memory_limit", "memory_peak", "disk_used",
                 "disk_total", "pids", "pids_limit", "oom_kills"}


def metrics(client, sid, query=""):
    return client.get(f"/v1/sandboxes/{sid}/metrics{query}")


def window(client, sid, start=None, end=None):
    """The ring's samples between start and end (unix seconds); all by default."""
    if start is None and end is None:
        start = 0
    q = []
    if start is not None:
        q.append(f"start={start}")
    if end is not None:
        q.append(f"end={end}")
    r = metrics(client, sid, "?" + "&".join(q))
    assert r.status == 200, r
    return r.json()["metrics"]


def test_current_sample(client, make_sandbox):
    sb = make_sandbox(cpu=1.5, memory="256Mi", disk="64Mi", pids=100)
    sid = sb["id"]
    r = metrics(client, sid)
    assert r.status == 200, r
    m = r.json()
    assert SAMPLE_FIELDS <= set(m), set(m) ^ SAMPLE_FIELDS
    assert m["id"] == sid and m["state"] == "running"
    assert m["created_at"] == sb["created_at"] and m["expires_at"] == sb["expires_at"]
    assert m["started_at"] >= m["created_at"]
    assert m["cpu_count"] == 1.5
    assert m["memory_limit"] == 256 << 20
    assert m["disk_total"] == 64 << 20
    assert m["pids_limit"] == 100 and m["pids"] >= 1  # init
    assert m["oom_kills"] == 0
    # taken while the sandbox existed: not before its creation, not after this answer
    created = datetime.fromisoformat(sb["created_at"].replace("Z", "+00:00")).timestamp()
    assert int(created) <= m["timestamp_unix"] <= time.time(), (sb["created_at"], m["timestamp_unix"])

    before = m
    client.sh(sid, "head -c 8388608 /dev/zero > /tmp/blob")
    after = metrics(client, sid).json()
    assert after["disk_used"] >= before["disk_used"] + (8 << 20)
    assert after["memory_used"] >= 8 << 20  # tmpfs pages count as the sandbox's memory
    assert after["cpu_usage_ns"] > before["cpu_usage_ns"]


def test_cpu_use_and_window(client, sandbox):
    sid = sandbox["id"]
    bg = client.post(f"/v1/sandboxes/{sid}/exec", {"shell": "while :; do :; done", "background": True})
    assert bg.status == 201
    t0 = int(time.time())
    samples = wait_for(lambda: [s for s in window(client, sid, start=t0) if s["cpu_used_cores"] > 0.1],
                       timeout=30, what="samples showing the busy loop")
    s = samples[-1]
    assert s["cpu_used_pct"] > 10
    assert abs(s["cpu_used_pct"] - s["cpu_used_cores"] / s["cpu_count"] * 100) < 0.1
    assert abs(s["cpu_host_pct"] - s["cpu_used_cores"] / os.cpu_count() * 100) < 0.1
    # a window holds 1 s samples, oldest first, inside the bounds asked
    wait_for(lambda: len(window(client, sid)) >= 3, timeout=20, what="three samples")
    allw = window(client, sid)
    ts = [x["timestamp_unix"] for x in allw]
    assert ts == sorted(ts) and len(set(x["timestamp"] for x in allw)) == len(allw)
    assert SAMPLE_FIELDS <= set(allw[0])
    mid = ts[len(ts) // 2]
    assert all(x["timestamp_unix"] >= mid for x in window(client, sid, start=mid))
    assert all(x["timestamp_unix"] <= mid for x in window(client, sid, end=mid))
    only = window(client, sid, start=mid, end=mid)
    assert only and all(x["timestamp_unix"] == mid for x in only)
    assert window(client, sid, start=0, end=1000) == []
    r = metrics(client, sid, "?start=0")
    assert r.json()["id"] == sid and r.json()["interval_ms"] == 1000


def test_oom_kills_counted(client, make_sandbox):
    sid = make_sandbox(memory="16Mi")["id"]
    r = client.exec(sid, shell="head -c 200000000 /dev/zero | tail > /dev/null")
    assert r.exit is not None and r.exit_code != 0
    assert metrics(client, sid).json()["oom_kills"] >= 1


def test_metrics_errors(client, sandbox, unique):
    sid = sandbox["id"]
    assert_error(metrics(client, f"nope-{unique}"), 404)
    assert_error(metrics(client, f"nope-{unique}", "?start=1"), 404)
    assert_error(metrics(client, "BAD_ID"), 404)
    for q in ("?start=x", "?start=-5", "?end=1.5", "?start=10&end=5", "?start=", "?end=+3",
              "?start=99999999999999999999"):
        assert_error(metrics(client, sid, q), 400)
    assert_error(client.post(f"/v1/sandboxes/{sid}/metrics", {}), 405)
    assert_error(client.get(f"/v1/sandboxes/{sid}/metrics/x"), 404)
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    assert_error(metrics(client, sid), 404)
    assert_error(metrics(client, sid, "?start=0"), 404)


def prom(client):
    r = client.get("/metrics")
    assert r.status == 200, r
    assert r.content_type.startswith("text/plain; version=0.0.4"), r.content_type
    text = r.body.decode()
    vals = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r'([a-z_]+(?:\{[a-z]+="[^"]*"\})?) (\S+)', line)
        assert m, f"not an exposition line: {line!r}"
        vals[m.group(1)] = float(m.group(2))
    for name in ("sandpit_sandboxes", "sandpit_sandbox_creations_total",
                 "sandpit_sandbox_create_failures_total", "sandpit_sandbox_create_duration_seconds",
                 "sandpit_exec_total"):
        assert f"# TYPE {name} " in text, name
    return vals


def test_prometheus_node_metrics(client, unique):
    v0 = prom(client)
    sid = client.create()["id"]
    v1 = prom(client)
    assert v1["sandpit_sandbox_creations_total"] == v0["sandpit_sandbox_creations_total"] + 1
    assert v1['sandpit_sandboxes{state="running"}'] >= 1
    h = "sandpit_sandbox_create_duration_seconds"
    assert v1[f"{h}_count"] == v0[f"{h}_count"] + 1
    assert v1[f"{h}_sum"] > v0[f"{h}_sum"]
    buckets = [(k, x) for k, x in v1.items() if k.startswith(h + "_bucket")]
    counts = [x for _, x in buckets]
    assert counts == sorted(counts) and buckets[-1][0].endswith('{le="+Inf"}')
    assert counts[-1] == v1[f"{h}_count"]
    # Buckets below 50 ms, so warm pool claims (about 1 ms) do not all land in the first.
    bounds = [k.split('le="')[1].rstrip('"}') for k, _ in buckets]
    assert bounds[:6] == ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05"], bounds

    client.exec(sid, cmd=["true"])
    client.exec(sid, cmd=["no-such-binary-here"])  # not started: not counted
    v2 = prom(client)
    assert v2["sandpit_exec_total"] == v1["sandpit_exec_total"] + 1

    r = client.post("/v1/sandboxes", {"template": f"missing-{unique}"})
    assert r.status in (400, 404), r
    v3 = prom(client)
    assert v3["sandpit_sandbox_create_failures_total"] == v2["sandpit_sandbox_create_failures_total"] + 1
    assert v3["sandpit_sandbox_creations_total"] == v2["sandpit_sandbox_creations_total"]

    assert client.post(f"/v1/sandboxes/{sid}/pause", {}).status == 200
    v4 = prom(client)
    assert v4['sandpit_sandboxes{state="paused"}'] == v3['sandpit_sandboxes{state="paused"}'] + 1
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    v5 = prom(client)
    assert v5['sandpit_sandboxes{state="paused"}'] == v3['sandpit_sandboxes{state="paused"}']
    assert_error(client.post("/metrics", {}), 405)


def test_lazy_sampling(client, make_sandbox):
    """Only sandboxes whose metrics were asked for lately are read every second;
    one nobody asked about is read once in 30 s. Asking starts its 1 s samples."""
    asked = make_sandbox()["id"]
    quiet = make_sandbox()["id"]
    t0 = int(time.time())
    v0 = prom(client)
    assert "sandpit_metrics_reads_total" in v0 and "sandpit_metrics_watched" in v0
    r = metrics(client, asked)
    assert r.status == 200, r
    v1 = prom(client)
    assert v1["sandpit_metrics_reads_total"] >= v0["sandpit_metrics_reads_total"] + 1  # read on request
    assert v1["sandpit_metrics_watched"] >= 1
    # the asked one gets a sample a second...
    samples = wait_for(lambda: (lambda w: w if len(w) >= 4 else None)(window(client, asked, start=t0)),
                       timeout=30, what="four 1 s samples of the sandbox asked about")
    ts = [x["timestamp_unix"] for x in samples]
    assert ts == sorted(ts) and all(SAMPLE_FIELDS <= set(x) for x in samples)
    assert all(x["memory_limit"] == samples[0]["memory_limit"] > 0 for x in samples)
    assert all(x["pids"] >= 1 for x in samples)
    # ...while the other, never asked about until now, was read at most once in that time
    # (its background slot), plus the read this first window request makes.
    first = window(client, quiet, start=t0)
    assert len(first) <= 2 < len(samples), (first, samples)
    # now asked, it gets its 1 s samples too, and a correct window of them
    more = wait_for(lambda: (lambda w: w if len(w) >= len(first) + 3 else None)(window(client, quiet, start=t0)),
                    timeout=30, what="1 s samples once asked")
    ts = [x["timestamp"] for x in more]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert all(x["cpu_used_cores"] >= 0 and x["cpu_count"] == more[0]["cpu_count"] for x in more)
    cpu = [x["cpu_usage_ns"] for x in more]
    assert cpu == sorted(cpu)


def test_current_sample_rate_without_ring(client, make_sandbox):
    """The first current sample of a sandbox never sampled measures CPU since its
    creation, not 0: a busy loop started right after create shows."""
    sid = make_sandbox()["id"]
    bg = client.post(f"/v1/sandboxes/{sid}/exec", {"shell": "while :; do :; done", "background": True})
    assert bg.status == 201
    # some CPU time used by a foreground loop too, before the first question
    r = client.exec(sid, shell="i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
    assert r.exit_code == 0, r
    m = metrics(client, sid).json()  # the first: nothing in its ring, unless a background sample
    assert m["cpu_usage_ns"] > 0 and m["cpu_used_cores"] > 0, m


def run_cli(agent, *args):
    import subprocess
    from conftest import REPO
    return subprocess.run([str(REPO / "build" / "bin" / "sandpit"), "--server", f"unix://{agent.socket}", *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_cli_metrics(client, agent, sandbox, unique):
    sid = sandbox["id"]
    r = run_cli(agent, "metrics", sid)
    assert r.returncode == 0, r
    for word in ("STATE      running", "CPU", "MEMORY", "/ 512Mi", "DISK", "PIDS", "OOM KILLS  0", "EXPIRES"):
        assert word in r.stdout, (word, r.stdout)
    r = run_cli(agent, "metrics", "--json", sid)
    assert r.returncode == 0 and __import__("json").loads(r.stdout)["id"] == sid
    wait_for(lambda: window(client, sid), timeout=10, what="a sample")
    r = run_cli(agent, "metrics", "--start", "0", sid)
    assert r.returncode == 0 and r.stdout.startswith("TIME") and len(r.stdout.splitlines()) >= 2, r
    r = run_cli(agent, "metrics", f"nope-{unique}")
    assert r.returncode != 0 and "not found" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run_cli(agent, "metrics", "--start", "x", sid)
    assert r.returncode == 2 and r.stderr.strip(), r
