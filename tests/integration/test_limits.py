"""Resource limits: memory (OOM), pids, disk, cpu."""

import os

from conftest import read_int, wait_for


def test_memory_limit_oom(client, agent, make_sandbox):
    sid = make_sandbox(memory="64Mi")["id"]
    limit = agent.cgroup_dir("memory", sid) / "memory.limit_in_bytes"
    assert read_int(limit) == 64 * 1024 * 1024, f"{limit} is not 64Mi"
    # tail keeps the current (endless, newline-free) line in memory
    r = client.exec(sid, cmd=["tail", "/dev/zero"], timeout=120)
    assert r.exit is not None, r
    assert r.exit["oom_killed"] is True, r.exit
    assert r.exit["exit_code"] == -1 and r.exit["signal"] == 9, r.exit
    assert r.exit["timed_out"] is False
    sb = client.sandbox(sid).json()
    assert sb["oom_kills"] >= 1, sb
    assert sb["state"] == "running"
    # still usable
    assert client.sh(sid, "echo ok") == "ok\n"
    # and a normal process afterwards is not marked
    r = client.exec(sid, cmd=["true"])
    assert r.exit["oom_killed"] is False


def test_memory_limit_counts_tmpfs(client, agent, make_sandbox):
    """The memory limit also counts the sandbox's tmpfs (doc: memory)."""
    sid = make_sandbox(memory="32Mi", disk="256Mi")["id"]
    r = client.exec(sid, shell="dd if=/dev/zero of=/tmp/fill bs=1M count=128 2>&1; echo dd=$?", timeout=120)
    assert r.exit is not None, r
    # the write cannot succeed: either dd fails, or it is OOM-killed
    assert "dd=0" not in r.stdout, f"128 MiB went into the tmpfs of a 32Mi sandbox: {r}"
    client.exec(sid, cmd=["rm", "-f", "/tmp/fill"])
    wait_for(lambda: client.exec(sid, shell="echo ok").stdout == "ok\n", timeout=20, interval=0.5,
             what="sandbox usable after freeing its tmpfs")


def test_pids_limit_stops_fork_bomb(client, agent, make_sandbox):
    sid = make_sandbox(pids=32)["id"]
    pids_dir = agent.cgroup_dir("pids", sid)
    assert (pids_dir / "pids.max").read_text().strip() == "32"
    r = client.exec(sid, shell="i=0; while [ $i -lt 200 ]; do sleep 5 & i=$((i+1)); done; echo spawned-all",
                    timeout=60)
    assert r.exit is not None, r
    # the kernel refused forks, and never let the sandbox exceed 32 tasks
    events = dict(line.split() for line in (pids_dir / "pids.events").read_text().splitlines())
    assert int(events.get("max", 0)) >= 1, f"pids.events: {events}"
    assert read_int(pids_dir / "pids.current") <= 32
    assert "spawned-all" not in r.stdout or r.stderr.strip(), f"200 forks succeeded under pids=32: {r}"

    # the sandbox recovers once the sleeps end
    def usable():
        res = client.exec(sid, shell="echo ok")
        return res.status == 200 and res.exit is not None and res.exit_code == 0 and res.stdout == "ok\n"

    wait_for(usable, timeout=30, interval=0.5, what="sandbox usable after the fork bomb")
    assert client.sandbox(sid).json()["state"] == "running"


def test_disk_limit(client, agent, make_sandbox):
    sid = make_sandbox(disk="8Mi")["id"]
    host_before = os.statvfs("/")
    for path in ("/tmp/big", "/big", "/home/user/big"):
        r = client.exec(sid, shell=f"dd if=/dev/zero of={path} bs=1M count=64", user="root", timeout=60)
        assert r.exit is not None, r
        assert r.exit_code != 0, f"64 MiB written to {path} in an 8Mi sandbox: {r}"
        assert "No space left on device" in r.stderr, r
        client.exec(sid, cmd=["rm", "-f", path], user="root")
    host_after = os.statvfs("/")
    freed = (host_before.f_bavail - host_after.f_bavail) * host_after.f_frsize
    assert freed < 96 * 1024 * 1024, f"host / lost {freed} bytes while the sandbox wrote 3 x 64 MiB"
    # the sandbox's writable layer is a tmpfs of about that size
    disk = agent.state_dir / "sandboxes" / sid / "disk"
    st = os.statvfs(disk)
    size = st.f_blocks * st.f_frsize
    assert size <= 9 * 1024 * 1024, f"{disk} is {size} bytes, not ~8Mi"
    # small writes still work after the failure
    assert client.sh(sid, "echo small > /tmp/small && cat /tmp/small") == "small\n"


def cpuacct_usage(agent, sid):
    return read_int(agent.cgroup_dir("cpuacct", sid) / "cpuacct.usage")


def cpu_stat(agent, sid):
    """The CFS bandwidth counters of the sandbox's cpu cgroup (v1)."""
    lines = (agent.cgroup_dir("cpu", sid) / "cpu.stat").read_text().splitlines()
    return {k: int(v) for k, v in (line.split() for line in lines)}


def test_cpu_limit_half_core(client, agent, make_sandbox):
    sid = make_sandbox(cpu=0.5)["id"]
    cpu = agent.cgroup_dir("cpu", sid)
    quota, period = read_int(cpu / "cpu.cfs_quota_us"), read_int(cpu / "cpu.cfs_period_us")
    assert quota * 2 == period, (quota, period)
    # two busy loops: unlimited, they would use both cores
    s0, u0 = cpu_stat(agent, sid), cpuacct_usage(agent, sid)
    bg = client.post(f"/v1/sandboxes/{sid}/exec",
                     {"shell": "while :; do :; done & while :; do :; done", "background": True})
    assert bg.status == 201, bg
    # the kernel enforces the quota: periods run out and the cgroup is throttled
    wait_for(lambda: cpu_stat(agent, sid)["nr_throttled"] - s0["nr_throttled"] >= 10, timeout=60, interval=0.2,
             what="the cgroup to be throttled 10 times")
    s1, u1 = cpu_stat(agent, sid), cpuacct_usage(agent, sid)
    assert s1["throttled_time"] > s0["throttled_time"], (s0, s1)
    assert u1 > u0, "the busy loops used no CPU: did they run?"
    # CPU time used is bounded by the quota of the periods that passed (plus one
    # period in progress at each end, and the kernel's per-CPU 5 ms slices);
    # unlimited, the two loops would use up to twice the period each period.
    periods = s1["nr_periods"] - s0["nr_periods"] + 2
    bound_ns = periods * quota * 1000 + 2 * 5_000_000
    assert u1 - u0 <= bound_ns, f"used {u1 - u0} ns of CPU in {periods} periods of a {quota} us quota"
    client.post(f"/v1/sandboxes/{sid}/processes/{bg.json()['pid']}/signal", {"signal": "KILL"})
