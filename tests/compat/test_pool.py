"""The gateway's creates claim warm pools (docs/performance.md#warm-pools):
the E2B SDK sends no cpu or memory, so the agent's defaults make the shape,
and a pool made with the same defaults serves Sandbox.create()."""

import ast
import os
import time

import pytest

from conftest import wait_for

pytestmark = pytest.mark.slow

CLK_TCK = os.sysconf("SC_CLK_TCK")


def claims(client, pool):
    key = f'sandpit_pool_claims_total{{pool="{pool}"}} '
    for line in client.get("/metrics").body.decode().splitlines():
        if line.startswith(key):
            return int(float(line.split()[-1]))
    raise AssertionError(f"{key!r} not in /metrics")


def test_sdk_create_is_served_by_a_warm_pool(sdk, agent):
    c = agent.client
    name = f"e2b-{sdk.line.replace('.', '-')}"
    # Template only: cpu, memory, pids and disk are the agent's defaults, as
    # in the gateway's create request (Sandbox.create()'s code-interpreter-v1
    # maps to code-interpreter).
    r = c.request("PUT", f"/v1/pools/{name}", body={"template": "code-interpreter", "size": 1})
    assert r.status == 200, r
    try:
        pooled = wait_for(lambda: (p := c.get(f"/v1/pools/{name}").json())["ready"] == 1 and p, 120,
                          what="the pool ready")["sandboxes"][0]
        # Its python kernel pre-started too (docs/code-interpreter.md, "Warm pools").
        wait_for(lambda: c.get(f"/v1/pools/{name}").json()["kernels_ready"] == 1, 120,
                 what="the pooled sandbox's kernel started")
        before = claims(c, name)
        t0 = time.clock_gettime(time.CLOCK_BOOTTIME)
        out = sdk("pooled.mjs")
        assert out["code"] == "2"
        assert out["killed"] is True
        assert claims(c, name) == before + 1
        assert c.get(f"/v1/pools/{name}").json()["kernel_claims"] == 1
        # PID 1 of the sandbox started before the SDK asked for it (tick precision).
        started = int(out["stat"].rsplit(")", 1)[1].split()[19]) / CLK_TCK
        assert started < t0, (started, t0)
        # So did the kernel that ran the code, and it has the caller's envVars.
        stat, greeting = ast.literal_eval(out["kernel"])
        assert greeting == "hello"
        assert int(stat.rsplit(")", 1)[1].split()[19]) / CLK_TCK < t0
        # The caller sees its id, never the pooled sandbox's internal name.
        assert out["hostname"] == out["id"] != pooled
        assert pooled not in c.get(f"/v1/pools/{name}").json()["sandboxes"]
    finally:
        assert c.delete(f"/v1/pools/{name}").status == 204
        wait_for(lambda: len(agent.sandbox_dirs()) == len(c.list_ids()), 60,
                 what="the pool's waiting sandbox removed")
