#!/usr/bin/python3
"""`make bench`, images (docs/images.md): a multi-layer image on a local
docker-registry, pulled and unpacked by the agent beside `skopeo copy` +
`umoci unpack` of the same image in the same run; create->ready from the
image once cached beside the `host` directory template."""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from bench import Agent, fmt, print_rows  # noqa: E402
from oci_images import Image, Registry, build_layer, busybox_base, LAYER_TYPES  # noqa: E402


def dir_layer(src, arcname):
    """A gzip layer of a host directory (regular files, dirs and symlinks)."""
    entries = []
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        base = arcname if rel == "." else os.path.join(arcname, rel)
        entries.append({"name": base, "type": "dir"})
        for f in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            p = os.path.join(root, f)
            if os.path.islink(p):
                entries.append({"name": os.path.join(base, f), "type": "symlink", "target": os.readlink(p)})
            elif os.path.isfile(p):
                with open(p, "rb") as fh:
                    entries.append({"name": os.path.join(base, f), "type": "file", "data": fh.read(),
                                    "mode": os.stat(p).st_mode & 0o7777})
    blob, diff = build_layer(entries, "gzip")
    return (blob, diff, LAYER_TYPES["gzip"])


BUILD_DOCKERFILE = """FROM host
COPY data.txt /srv/data.txt
RUN echo built > /srv/run.txt
RUN cat /srv/data.txt /srv/run.txt > /srv/both.txt
"""


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates-dir", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--creates", type=int, default=20)
    args = ap.parse_args()
    for tool in ("docker-registry", "skopeo", "umoci"):
        if not shutil.which(tool):
            print(f"bench_images: {tool} is missing (mk/deps.sh); skipped", file=sys.stderr)
            return 0
    tmp = tempfile.mkdtemp(prefix="sandpit-bench-images-")
    reg = Registry(os.path.join(tmp, "registry"))
    agent = None
    try:
        layers = [build_layer(busybox_base(), "gzip"), dir_layer("/usr/lib/python3.11", "usr/lib/python3.11"),
                  dir_layer("/usr/share/zoneinfo", "usr/share/zoneinfo")]
        layers[0] = (layers[0][0], layers[0][1], LAYER_TYPES["gzip"])
        img = Image(layers, env=["PATH=/bin"])
        reg.client.push("bench/img", "v1", img)
        ref = f"{reg.host}/bench/img:v1"
        packed = sum(len(b) for b, _, _ in layers)
        images = os.path.join(tmp, "images")
        agent = Agent(args.templates_dir, ["--images-dir", images, "--insecure-registry", reg.host])

        def sandpit_pull():
            st, body = agent.call("POST", "/v1/images/pull", {"image": ref})
            assert st == 200, body
            st, body = agent.call("DELETE", "/v1/images?image=" + ref)
            assert st == 204, body

        def skopeo_umoci():
            d = tempfile.mkdtemp(prefix="umoci-", dir=tmp)
            subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
                            f"oci:{d}/layout:v1"], check=True, capture_output=True)
            subprocess.run(["umoci", "unpack", "--image", f"{d}/layout:v1", f"{d}/bundle"], check=True,
                           capture_output=True)
            shutil.rmtree(d)

        pull = timed(sandpit_pull, args.runs)
        ref_tools = timed(skopeo_umoci, args.runs)
        st, body = agent.call("POST", "/v1/images/pull", {"image": ref})
        assert st == 200, body

        def create(spec):
            def one():
                st, sb = agent.call("POST", "/v1/sandboxes", spec)
                assert st == 201, sb
                created.append(sb["id"])
            created = []
            ms = timed(one, args.creates)
            for sid in created:
                agent.call("DELETE", "/v1/sandboxes/" + sid)
            return ms

        from_image = create({"image": ref})
        from_dir = create({"template": "host"})

        # A Dockerfile build (docs/build.md): COPY and two RUN steps FROM host;
        # the first build runs them, each rebuild takes every step from the cache.
        ctx = io.BytesIO()
        with tarfile.open(fileobj=ctx, mode="w") as t:
            for name, text in (("Dockerfile", BUILD_DOCKERFILE), ("data.txt", "data\n")):
                info = tarfile.TarInfo(name)
                info.size = len(text)
                t.addfile(info, io.BytesIO(text.encode()))

        def build(tag):
            agent.conn.request("POST", "/v1/templates/build?tag=" + tag, ctx.getvalue(),
                               {"Content-Type": "application/x-tar"})
            r = agent.conn.getresponse()
            lines = [json.loads(x) for x in r.read().splitlines() if x.strip()]
            assert r.status == 200 and lines and "image" in lines[-1], lines[-3:]
            return lines

        first = []
        for i in range(args.runs):
            t = time.perf_counter()
            ev = build("bench-build-%d" % i)  # another tag, the same steps: cached after the first
            ms = (time.perf_counter() - t) * 1000
            if i == 0:
                first.append(ms)
                assert not any(e.get("cached") for e in ev if "cached" in e), ev
        rebuilt = timed(lambda: build("bench-build-0"), args.runs)
        note = f"{len(layers)} layers, {packed / 1e6:.1f} MB packed; median of {args.runs}"
        rows = [
            ("image pull + unpack: sandpit (POST /v1/images/pull, a fresh store)", *fmt(pull), note),
            ("image pull + unpack: skopeo copy + umoci unpack", *fmt(ref_tools), note),
            ("create -> ready: image template (cached)", *fmt(from_image), f"{args.creates} creates"),
            ("create -> ready: directory template (host)", *fmt(from_dir), f"{args.creates} creates"),
            ("template build: COPY + 2 RUN FROM host, first build", "%.2f" % first[0], "", "one build"),
            ("template build: the same, every step cached", *fmt(rebuilt), f"median of {args.runs}"),
        ]
        print_rows(rows)
    finally:
        if agent:
            agent.stop()
        reg.stop()
        subprocess.run(["rm", "-rf", "--one-file-system", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
