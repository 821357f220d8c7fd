"""File benchmarks for bench.py: a 1 MiB write+read round trip through the
files API beside the same on the host's tmpfs, and a 100 MiB tree downloaded as
tar.gz (and uploaded) beside `tar czf` of the same tree on the host."""
import io
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
import urllib.parse

MIB = 1 << 20


def _request(agent, method, path, body=None):
    agent.conn.request(method, path, body, {"Content-Type": "application/octet-stream"} if body else {})
    r = agent.conn.getresponse()
    return r.status, r.read()


def _tree(dest, files=100):
    """files x 1 MiB: half random, half text, so gzip has work of both kinds."""
    os.makedirs(dest, exist_ok=True)
    text = (b"the quick brown fox jumps over the lazy dog 0123456789\n" * 20000)[:MIB // 2]
    for i in range(files):
        sub = os.path.join(dest, "d%02d" % (i % 10))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "f%03d.bin" % i), "wb") as f:
            f.write(os.urandom(MIB // 2) + text)


def bench_files(agent, runs):
    """Returns rows for bench.py's table."""
    rows = []
    st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host", "timeout": 900,
                                                  "disk": "1Gi", "memory": "1Gi"})
    assert st == 201, sb
    sid = sb["id"]
    tmp = tempfile.mkdtemp(prefix="sandpit-bench-files-", dir="/dev/shm")
    try:
        data = os.urandom(MIB)
        q = "/v1/sandboxes/%s/files?path=/tmp/bench.bin" % sid
        api, host = [], []
        for i in range(runs + 3):
            t = time.perf_counter()
            st, _ = _request(agent, "PUT", q, data)
            assert st == 200
            st, got = _request(agent, "GET", q)
            assert st == 200 and got == data
            if i >= 3:
                api.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            with open(os.path.join(tmp, "bench.bin"), "wb") as f:
                f.write(data)
            with open(os.path.join(tmp, "bench.bin"), "rb") as f:
                assert f.read() == data
            if i >= 3:
                host.append((time.perf_counter() - t) * 1000)
        rows.append(("files: 1 MiB write+read round trip (sandpit API)", "%.2f" % statistics.median(api),
                     "%.2f" % sorted(api)[int(0.95 * (len(api) - 1))],
                     "%.1fx the host's own write+read on tmpfs" % (statistics.median(api) / statistics.median(host))))
        rows.append(("host write+read of 1 MiB on tmpfs", "%.2f" % statistics.median(host),
                     "%.2f" % sorted(host)[int(0.95 * (len(host) - 1))], "baseline"))

        tree = os.path.join(tmp, "tree")
        _tree(tree)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
            tf.add(tree, arcname=".")
        body = buf.getvalue()
        up = "/v1/sandboxes/%s/archive?path=/tmp/tree&format=tar.gz" % sid
        t = time.perf_counter()
        st, _ = _request(agent, "PUT", up, body)
        upload_s = time.perf_counter() - t
        assert st == 200
        down = "/v1/sandboxes/%s/archive?%s" % (sid, urllib.parse.urlencode(
            {"path": "/tmp/tree", "format": "tar.gz"}))
        api_s, tar_s = [], []
        for _ in range(3):
            t = time.perf_counter()
            st, got = _request(agent, "GET", down)
            api_s.append(time.perf_counter() - t)
            assert st == 200 and len(got) > 10 * MIB
            t = time.perf_counter()
            subprocess.run(["tar", "czf", "-", "-C", tree, "."], stdout=subprocess.DEVNULL, check=True)
            tar_s.append(time.perf_counter() - t)
        a, h = statistics.median(api_s), statistics.median(tar_s)
        rows.append(("files: download a 100 MiB tree as tar.gz (MiB/s)", "%.0f" % (100 / a), "",
                     "%.2f s; %.2fx the time of host `tar czf`" % (a, a / h)))
        rows.append(("host `tar czf` of the same tree (MiB/s)", "%.0f" % (100 / h), "", "%.2f s; baseline" % h))
        rows.append(("files: upload the same tree as tar.gz (MiB/s of content)", "%.0f" % (100 / upload_s), "",
                     "%.1f MiB body, checked then extracted; one run" % (len(body) / MIB)))
    finally:
        agent.call("DELETE", "/v1/sandboxes/" + sid)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
