#!/usr/bin/python3
"""MCP rows for `make bench` (docs/performance.md, "MCP"): a tools/call
run_code("1+1") round trip on the session's (warm) sandbox, over stdio
(`sandpit mcp` against the agent's socket) and over Streamable HTTP (the
gateway's /mcp, answered as SSE), beside the native POST .../code `1+1` on the
same agent in the same run. Needs the `default` template. Standard library
only: the client here is a plain JSON-RPC writer, so the rows are sandpit's
cost, not an SDK's.
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time

from bench import BIN, Agent, fmt, pct, print_rows

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def call(i):
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": "run_code", "arguments": {"code": "1+1"}}}


def check(answer):
    res = answer["result"]
    assert not res.get("isError") and res["structuredContent"]["results"][0]["text"] == "2", answer


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bench_stdio(agent, runs):
    p = subprocess.Popen([os.path.join(BIN, "sandpit"), "--server", "unix://" + agent.sock, "mcp"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def rpc(msg):
        p.stdin.write(json.dumps(msg) + "\n")
        p.stdin.flush()
        if "id" not in msg:
            return None
        return json.loads(p.stdout.readline())

    try:
        rpc(INIT)
        rpc(INITIALIZED)
        for i in range(3):  # the first makes the session's sandbox
            check(rpc(call(i + 1)))
        out = []
        for i in range(runs):
            t = time.perf_counter()
            check(rpc(call(100 + i)))
            out.append((time.perf_counter() - t) * 1000)
        return out
    finally:
        p.stdin.close()
        p.wait(timeout=60)  # end of input: the session's sandbox is deleted


def bench_http(port, runs, key):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "X-API-KEY": key}

    def post(msg):
        conn.request("POST", "/mcp", json.dumps(msg), headers)
        r = conn.getresponse()
        body = r.read().decode()
        if r.getheader("Mcp-Session-Id"):
            headers["Mcp-Session-Id"] = r.getheader("Mcp-Session-Id")
            headers["MCP-Protocol-Version"] = "2025-11-25"
        if r.getheader("Content-Type", "").startswith("text/event-stream"):
            datas = [l[6:] for l in body.splitlines() if l.startswith("data: ")]
            return json.loads(datas[-1])
        return json.loads(body) if body else None

    post(INIT)
    post(INITIALIZED)
    try:
        for i in range(3):
            check(post(call(i + 1)))
        out = []
        for i in range(runs):
            t = time.perf_counter()
            check(post(call(100 + i)))
            out.append((time.perf_counter() - t) * 1000)
        return out
    finally:
        conn.request("DELETE", "/mcp", headers=headers)
        conn.getresponse().read()
        conn.close()


def bench_native(agent, runs):
    st, sb = agent.call("POST", "/v1/sandboxes", {"template": "default", "timeout": 300})
    assert st == 201, sb
    try:
        out = []
        for i in range(runs + 3):
            t = time.perf_counter()
            st, body = agent.call("POST", "/v1/sandboxes/%s/code" % sb["id"], {"code": "1+1"})
            assert st == 200 and any(json.loads(l).get("text") == "2" for l in body.splitlines()), body
            if i >= 3:
                out.append((time.perf_counter() - t) * 1000)
        return out
    finally:
        agent.call("DELETE", "/v1/sandboxes/" + sb["id"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates-dir", required=True)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.templates_dir, "default")):
        print_rows([("MCP rows", "n/a", "n/a", "no default template")])
        return 0
    port = free_port()
    agent = Agent(args.templates_dir, extra=("--gateway-listen", "127.0.0.1:%d" % port))
    try:
        native = bench_native(agent, args.runs)
        stdio = bench_stdio(agent, args.runs)
        # /mcp takes API keys (docs/auth.md): one made as a user would
        key = subprocess.run([os.path.join(BIN, "sandpit"), "keys", "--state-dir", os.path.join(agent.tmp, "state"),
                              "create", "--namespace", "bench"],
                             capture_output=True, text=True, check=True).stdout.strip()
        over_http = bench_http(port, args.runs, key)
        st, left = agent.call("GET", "/v1/sandboxes")
        assert st == 200 and left["sandboxes"] == [], left  # both sessions' sandboxes went
    finally:
        agent.stop()
    base = pct(native, 50)
    print_rows([
        ("MCP stdio: tools/call run_code('1+1') round trip", *fmt(stdio),
         "`sandpit mcp`, session sandbox warm; +%.2f ms over native" % (pct(stdio, 50) - base)),
        ("MCP HTTP: tools/call run_code('1+1') round trip", *fmt(over_http),
         "gateway /mcp, SSE answer, keep-alive; +%.2f ms over native" % (pct(over_http, 50) - base)),
        ("native: POST .../code `1+1`", *fmt(native), "same agent, unix socket, same run"),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
