#!/usr/bin/python3
"""Gateway rows for `make bench` (docs/performance.md, "E2B SDK"): the real
@e2b/code-interpreter (tests/compat/setup.sh installs it) against
`sandpit-agent --gateway-listen`, beside the native API measured in the same
run on the same agent:
  - Sandbox.create() -> runCode('1+1') -> kill(), wall time in node, beside the
    native POST /v1/sandboxes -> POST .../code -> DELETE over the unix socket;
  - commands.run('true') round trip, beside the native exec of `/bin/sh -c true`
    (the SDK runs `/bin/bash -l -c true`, a login shell: the command itself costs
    more, so the third row runs that same command natively).
In cluster mode (--cluster, on by default when kubectl is there) the same SDK
rounds against `sandpit-operator --gateway-listen` on the fixture API server
with one cluster-mode agent (as tests/compat/test_cluster.py runs them), beside
the native create -> code -> delete on that agent's TCP API in the same run.
Needs the `default` template and node. Standard library only.
"""
import argparse
import http.client
import json
import shutil
import tempfile
import os
import socket
import subprocess
import sys
import time

from bench import Agent, fmt, pct, print_rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT = os.environ.get("SANDPIT_COMPAT_DIR") or "/var/cache/sandpit/compat"
LINE = "v2.51"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def code_text(out):
    """The text result of the agent's code answer (NDJSON lines)."""
    for line in out.decode().splitlines():
        ev = json.loads(line) if line.startswith("{") else {}
        if ev.get("type") == "result" and "text" in ev:
            return ev["text"]
    return None


def native_round(agent):
    t = time.perf_counter()
    st, sb = agent.call("POST", "/v1/sandboxes", {"template": "default", "timeout": 300})
    assert st == 201, sb
    try:
        st, out = agent.call("POST", "/v1/sandboxes/%s/code" % sb["id"], {"code": "1+1"})
        assert st == 200 and code_text(out) == "2", out
    finally:
        st, _ = agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
    assert st == 204
    return (time.perf_counter() - t) * 1000


def native_exec(agent, sid, argv, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        st, body = agent.call("POST", "/v1/sandboxes/%s/exec" % sid, {"cmd": argv})
        assert st == 200 and b'"exit_code":0' in body, body
        out.append((time.perf_counter() - t) * 1000)
    return out


def run_sdk(work, url, runs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_KEY="e2b_" + "0" * 40, E2B_API_URL=url, E2B_SANDBOX_URL=url)
    r = subprocess.run(["node", "bench_sdk.mjs", str(runs)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError("node bench_sdk.mjs failed:\n" + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def cluster_rows(templates, work, runs):
    """The SDK through an operator replica's gateway, beside the agent's native
    API over TCP, on the fixture API server."""
    import bench_operator as bo

    if not os.path.exists(bo.KUBECTL):
        return [("E2B SDK rows, cluster", "n/a", "n/a", "kubectl is not installed")]
    tmp = tempfile.mkdtemp(prefix="sandpit-bench-gw-")
    kube = bo.Kube(tmp)
    agent = op = None
    gw_port = free_port()

    class GwOperator(bo.Operator):
        def start(self):
            if not getattr(self, "wrapped", False):
                base, self.wrapped = self.argv, True
                self.argv = lambda port: base(port) + ["--gateway-listen", "127.0.0.1:%d" % gw_port]
            super().start()

    def call(method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=120)
        c.request(method, path, json.dumps(body) if body is not None else None,
                  {"Authorization": "Bearer " + agent.token, "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def native():
        t = time.perf_counter()
        st, sb = call("POST", "/v1/sandboxes", {"template": "default", "timeout": 300})
        assert st == 201, sb
        sid = json.loads(sb)["id"]
        try:
            st, out = call("POST", "/v1/sandboxes/%s/code" % sid, {"code": "1+1"})
            assert st == 200 and code_text(out) == "2", out
        finally:
            st, _ = call("DELETE", "/v1/sandboxes/" + sid)
        assert st == 204
        return (time.perf_counter() - t) * 1000

    try:
        kube.kubectl("apply", "-f", os.path.join(ROOT, "crds"))
        kube.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": bo.OP_NS}})
        agent = bo.Agent(kube, templates, tmp)
        lease = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/sandpit-agent-%s" % (bo.OP_NS, bo.NODE)
        bo.wait_for(lambda: kube.request("GET", lease)[0] == 200, 30, "the agent's Lease")
        op = GwOperator(kube, agent.token_file, tmp, 2)
        op.wait_ready()
        for _ in range(2):
            native()
        nat = [native() for _ in range(runs)]
        sdk = run_sdk(work, "http://127.0.0.1:%d" % gw_port, runs)
        left = agent.ids()
        if left:
            raise RuntimeError("the node still holds %d sandboxes after the SDK's kills" % len(left))
    finally:
        if op:
            op.stop()
        if agent:
            agent.stop()
        kube.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        ("E2B SDK: Sandbox.create() → runCode('1+1') → kill() (cluster gateway, fixture API server)",
         *fmt(sdk["e2e"]), "Sandbox object → Ready, kill waits until gone; %.2fx native"
         % (pct(sdk["e2e"], 50) / pct(nat, 50))),
        ("native: the agent's create → code `1+1` → delete over TCP (same node)", *fmt(nat),
         "no Kubernetes; same run"),
        ("E2B SDK: commands.run('true') round trip (cluster gateway)", *fmt(sdk["cmd"]),
         "the operator relays to the agent over TCP"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates-dir", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=True,
                    help="also the cluster rows (fixture API server + operator --gateway-listen)")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.templates_dir, "default")):
        print_rows([("E2B SDK rows", "n/a", "n/a", "no default template")])
        return 0
    r = subprocess.run(["bash", os.path.join(ROOT, "tests", "compat", "setup.sh")], capture_output=True,
                       text=True)
    if r.returncode != 0:
        print_rows([("E2B SDK rows", "n/a", "n/a", "the SDK could not be installed: %s" % r.stderr.strip()[-200:])])
        return 0
    port = free_port()
    agent = Agent(args.templates_dir, extra=("--gateway-listen", "127.0.0.1:%d" % port))
    rows = []
    work = tempfile.mkdtemp(prefix="sandpit-bench-sdk-")
    os.symlink(os.path.join(COMPAT, LINE, "node_modules"), os.path.join(work, "node_modules"))
    with open(os.path.join(ROOT, "bench", "bench_sdk.mjs")) as src, \
            open(os.path.join(work, "bench_sdk.mjs"), "w") as dst:
        dst.write(src.read())
    try:
        for _ in range(2):
            native_round(agent)
        native = [native_round(agent) for _ in range(args.runs)]
        sdk = run_sdk(work, "http://127.0.0.1:%d" % port, args.runs)
        st, sb = agent.call("POST", "/v1/sandboxes", {"template": "default", "timeout": 300})
        assert st == 201, sb
        try:
            native_exec(agent, sb["id"], ["/bin/sh", "-c", "true"], 10)
            sh = native_exec(agent, sb["id"], ["/bin/sh", "-c", "true"], args.runs * 5)
            bash = native_exec(agent, sb["id"], ["/bin/bash", "-l", "-c", "true"], args.runs * 5)
        finally:
            agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
        rows.append(("E2B SDK: Sandbox.create() → runCode('1+1') → kill() (local gateway)", *fmt(sdk["e2e"]),
                     "target p50 < 100 ms; %.2fx native" % (pct(sdk["e2e"], 50) / pct(native, 50))))
        rows.append(("native: POST /v1/sandboxes → POST .../code `1+1` → DELETE", *fmt(native),
                     "same agent, unix socket, same run"))
        rows.append(("E2B SDK: commands.run('true') round trip", *fmt(sdk["cmd"]),
                     "runs `/bin/bash -l -c true`"))
        rows.append(("native: exec `/bin/bash -l -c true`", *fmt(bash), "the same command"))
        rows.append(("native: exec `/bin/sh -c true`", *fmt(sh), ""))
    finally:
        agent.stop()
    try:
        if args.cluster:
            rows += cluster_rows(args.templates_dir, work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
