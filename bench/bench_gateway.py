#!/usr/bin/python3
"""Gateway rows for `make bench` (docs/performance.md, "E2B SDK"): the real
@e2b/code-interpreter (tests/compat/setup.sh installs it) against
`sandpit-agent --gateway-listen`, beside the native API measured in the same
run on the same agent:
  - Sandbox.create() -> runCode('1+1') -> kill(), wall time in node, beside the
    native POST /v1/sandboxes -> POST .../code -> DELETE over the unix socket,
    and the same SDK rounds served by a warm pool of the default template and
    the agent's default shape (the SDK sends no cpu or memory), each round
    starting with the pool full and settled, with its python kernels
    pre-started (the default) and without ("kernel": false);
  - commands.run('true') round trip, beside the native exec of `/bin/sh -c true`
    (the SDK runs `/bin/bash -l -c true`, a login shell: the command itself costs
    more, so the third row runs that same command natively);
  - what an API key check adds (docs/auth.md): GET /v2/sandboxes (no sandboxes)
    on one keep-alive connection with a key, beside the same on an agent with
    --gateway-auth none.
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
import re
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


def gateway_list(port, headers, n, warmup=20):
    """GET /v2/sandboxes n times on one keep-alive connection (after a
    warm-up); headers: one dict for every request, or a list, one each."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for i in range(n + warmup):
        h = headers[(i - warmup) % len(headers)] if isinstance(headers, list) else headers
        t = time.perf_counter()
        c.request("GET", "/v2/sandboxes", headers=h)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body[:300])
        if i >= warmup:
            out.append((time.perf_counter() - t) * 1000)
    c.close()
    return out


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


POOL = "sdk"


def pool_settled(agent, claims, timeout=120):
    """Waits for the pool to hold its one ready sandbox, its python kernel
    pre-started, with nothing in flight after `claims` claims; answers its view."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, p = agent.call("GET", "/v1/pools/" + POOL)
        assert st == 200, p
        if (p["claims"] >= claims and p["ready"] == p["size"] and p["creating"] == 0 and
                (not p.get("kernel") or p.get("kernels_ready") == p["size"])):
            return p
        time.sleep(0.01)
    raise RuntimeError("the warm pool did not settle: %s" % p)


def sdk_pooled(agent, work, env, runs, kernel=True):
    """The SDK rounds with a warm pool; each must claim (the pool's counter)
    and, with kernel, take the pre-started python kernel."""
    st, p = agent.call("PUT", "/v1/pools/" + POOL, {"template": "code-interpreter", "size": 1, "kernel": kernel})
    assert st == 200, p
    proc = subprocess.Popen(["node", "bench_sdk.mjs", str(runs), "stepped"], cwd=work, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        claims = pool_settled(agent, 0)["claims"]
        out = None
        for i in range(runs + 2):
            pool_settled(agent, claims + i)
            proc.stdin.write("\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line.startswith('{"round"'):
                raise RuntimeError("node bench_sdk.mjs stepped failed:\n" + line + proc.stderr.read())
        out = json.loads(proc.stdout.readline())
        proc.wait(60)
        st, p = agent.call("GET", "/v1/pools/" + POOL)
        assert p["claims"] == claims + runs + 2, "a round did not claim a pooled sandbox: %s" % p
        if kernel:
            assert p["kernel_claims"] == runs + 2, "a round did not take the pre-started kernel: %s" % p
        return out["e2e"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        agent.call("DELETE", "/v1/pools/" + POOL)


def sdk_env(url, key):
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_KEY=key, E2B_API_URL=url, E2B_SANDBOX_URL=url)
    return env


def run_sdk(work, env, runs):
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
    os.chmod(tmp, 0o711)  # with user namespaces sandboxes search their way in
    kube = bo.Kube(tmp)
    agent = op = None
    gw_port = free_port()

    class GwOperator(bo.Operator):
        auth = "none"

        def start(self):
            if not getattr(self, "wrapped", False):
                base, self.wrapped = self.argv, True
                # --gateway-auth none for the SDK rows: the key check's own cost
                # is the local rows'; keys (Kubernetes tokens) for the token rows
                self.argv = lambda port: base(port) + ["--gateway-listen", "127.0.0.1:%d" % gw_port,
                                                       "--gateway-auth", self.auth]
            super().start()

    class KeyedOperator(GwOperator):
        auth = "keys"

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
        url = "http://127.0.0.1:%d" % gw_port
        # --gateway-auth none: any non-empty key
        sdk = run_sdk(work, sdk_env(url, "e2b_" + "0" * 40), runs)
        left = agent.ids()
        if left:
            raise RuntimeError("the node still holds %d sandboxes after the SDK's kills" % len(left))
        # What a Kubernetes token costs (docs/auth.md): GET /v2/sandboxes with a
        # ServiceAccount's bearer token, the reviews' answers cached (one token)
        # and not (a new token each request: a TokenReview and a
        # SubjectAccessReview to the fixture API server), beside --gateway-auth none.
        unauthed = gateway_list(gw_port, {"X-API-KEY": "e2b_" + "0" * 40}, runs * 10)
        op.stop()
        op = KeyedOperator(kube, agent.token_file, tmp, 2)
        op.wait_ready()
        bo.wait_for(lambda: port_open(gw_port), 30, "the keyed gateway's port")
        user = "system:serviceaccount:%s:bench" % bo.OP_NS
        kube.ok("POST", "/_admin/grants", {"user": user, "namespace": bo.OP_NS, "verbs": ["list"]})

        def token(i):
            t = "bench-token-%d" % i
            kube.ok("POST", "/_admin/tokens", {"token": t, "username": user, "uid": "uid-bench",
                                               "groups": ["system:serviceaccounts", "system:authenticated"]})
            return t
        cached_tok = gateway_list(gw_port, {"Authorization": "Bearer " + token(0)}, runs * 10)
        # a token the API server does not know is refused: new tokens are reviewed
        c = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=30)
        c.request("GET", "/v2/sandboxes", headers={"Authorization": "Bearer bench-token-unknown"})
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 401, r.status
        fresh = [token(i) for i in range(1, runs * 5 + 1)]
        uncached_tok = gateway_list(gw_port, [{"Authorization": "Bearer " + t} for t in fresh], len(fresh),
                                    warmup=0)
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
        ("gateway: GET /v2/sandboxes with a Kubernetes token, reviews cached", *fmt(cached_tok),
         "+%.3f ms p50 over --gateway-auth none (SHA-256 of the token, two cache lookups)"
         % (pct(cached_tok, 50) - pct(unauthed, 50))),
        ("gateway: the same, a new token each request (not cached)", *fmt(uncached_tok),
         "+%.3f ms p50: a TokenReview and a SubjectAccessReview to the fixture API server (Python)"
         % (pct(uncached_tok, 50) - pct(unauthed, 50))),
        ("gateway: GET /v2/sandboxes, --gateway-auth none (cluster)", *fmt(unauthed), "keep-alive"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates-dir", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=True,
                    help="also the cluster rows (fixture API server + operator --gateway-listen)")
    args = ap.parse_args()
    # Sandbox.create() asks for code-interpreter-v1: the code-interpreter template.
    if not os.path.isdir(os.path.join(args.templates_dir, "code-interpreter")):
        print_rows([("E2B SDK rows", "n/a", "n/a", "no code-interpreter template (mk/templates.sh code-interpreter)")])
        return 0
    r = subprocess.run(["bash", os.path.join(ROOT, "tests", "compat", "setup.sh")], capture_output=True,
                       text=True)
    if r.returncode != 0:
        print_rows([("E2B SDK rows", "n/a", "n/a", "the SDK could not be installed: %s" % r.stderr.strip()[-200:])])
        return 0
    port = free_port()
    # --capacity-cpu: room for the warm pool beside a cold create on a small node
    agent = Agent(args.templates_dir, extra=("--gateway-listen", "127.0.0.1:%d" % port, "--capacity-cpu", "64"))
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
        url = "http://127.0.0.1:%d" % port
        # the gateway takes API keys only (docs/auth.md): one made as a user would
        key = subprocess.run([os.path.join(ROOT, "build", "bin", "sandpit"), "keys", "--state-dir",
                              os.path.join(agent.tmp, "state"), "create", "--namespace", "bench"],
                             capture_output=True, text=True, check=True).stdout.strip()
        env = sdk_env(url, key)
        sdk = run_sdk(work, env, args.runs)
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
        keyed = gateway_list(port, {"X-API-KEY": key}, args.runs * 10)
        pooled = sdk_pooled(agent, work, env, args.runs)
        bare = sdk_pooled(agent, work, env, args.runs, kernel=False)
        rows.insert(1, ("E2B SDK: the same, served by a warm pool (local gateway)", *fmt(pooled),
                        "python kernel pre-started (docs/code-interpreter.md); target p50 < 100 ms; "
                        "%.2fx without the pool, %.2fx native" % (pct(pooled, 50) / pct(sdk["e2e"], 50),
                                                                  pct(pooled, 50) / pct(native, 50))))
        rows.insert(2, ("E2B SDK: the same, warm pool with `\"kernel\": false`", *fmt(bare),
                        "the kernel starts at the first runCode"))
    finally:
        agent.stop()
    port = free_port()
    open_agent = Agent(args.templates_dir, extra=("--gateway-listen", "127.0.0.1:%d" % port,
                                                  "--gateway-auth", "none"))
    try:
        for _ in range(200):  # the gateway starts after the socket
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        unkeyed = gateway_list(port, {"X-API-KEY": "any"}, args.runs * 10)
    finally:
        open_agent.stop()
    rows.append(("gateway: GET /v2/sandboxes with an API key", *fmt(keyed),
                 "+%.3f ms p50 over --gateway-auth none (stat of the key file, SHA-256, compare)"
                 % (pct(keyed, 50) - pct(unkeyed, 50))))
    rows.append(("gateway: GET /v2/sandboxes, --gateway-auth none", *fmt(unkeyed), "keep-alive, no sandboxes"))
    try:
        if args.cluster:
            rows += cluster_rows(args.templates_dir, work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
