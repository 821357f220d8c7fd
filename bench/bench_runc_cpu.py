#!/usr/bin/env python3
"""Where `runc run -d` spends its CPU, and what the agent could change to cut it.

Each variant is one `runc run -d` of a long-sleeping process plus its teardown
(`runc delete --force`), with the config.json the real agent writes (taken from
a sandbox of a standalone agent of build/bin, then pointed at a copy of the host
template's rootfs). Its CPU is the cpuacct.usage of a cgroup that runc is put
in before it executes and under which the container's own cgroup is made, so it
counts runc run, runc init (both of its executions) and runc delete, and
nothing else. runc is run as the agent runs it: a sealed memfd copy
(runtime-exe.c) with the agent's flags. With the agent's default user
namespaces the container joins a namespace made here with the same mappings,
on a rootfs copy owned by the mapped root. The variants run interleaved, one
run each per round, so load on the machine falls on all alike; the table shows
medians (absolute CPU grows with the machine's load; compare within a table).

Usage (root): bench/bench_runc_cpu.py [--runs N] [--templates-dir DIR]
              [--userns on|off] [--only NAME,...]   (BENCH_CRUN=1: add crun,
              which 1.8 refuses on cgroup v1 hybrid hosts)
Leaves nothing behind: containers, cgroups, the namespace holder, temp dirs.
"""

import argparse
import copy
import ctypes
import fcntl
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (Agent, BIN)

CPUACCT = "/sys/fs/cgroup/cpuacct"
PLAIN = "_BENCH_PLAIN"  # not passed on: runs the runc binary itself, not the memfd copy
RUNTIME = "_BENCH_RUNTIME"  # not passed on: runs this runtime (a name in $PATH) instead
MFD_ALLOW_SEALING = 2
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def sealed_copy(path):
    """A sealed memfd copy of path, as the agent runs runc (runtime-exe.c):
    runc init then need not copy itself before running (runc 1.1)."""
    fd = os.memfd_create("runc", MFD_ALLOW_SEALING)  # inheritable: executed as /proc/self/fd/N
    with open(path, "rb") as f:
        os.write(fd, f.read())
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    return fd


def agent_config(templates, extra=()):
    """The config.json the agent writes for a host-template sandbox."""
    agent = bench.Agent(templates, extra)
    try:
        st, sb = agent.call("POST", "/v1/sandboxes", {"template": "host"})
        assert st == 201, sb
        found = None
        for d, _, files in os.walk(os.path.join(agent.tmp, "state")):
            if "config.json" in files:
                found = os.path.join(d, "config.json")
                break
        assert found, "no config.json under the agent's state dir"
        with open(found) as f:
            cfg = json.load(f)
        st, _ = agent.call("DELETE", "/v1/sandboxes/" + sb["id"])
        assert st == 204
        bench.settle(agent)
    finally:
        agent.stop()
        shutil.rmtree(agent.tmp, ignore_errors=True)
    return cfg


def userns_holder(cfg):
    """A process in a new user namespace with cfg's id mappings (the agent
    keeps such namespaces ready and has runc join them): its pid."""
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(w2)
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.unshare(0x10000000) == 0  # CLONE_NEWUSER
        os.write(w, b"1" if ok else b"0")
        os.read(r2, 1)  # until the parent closes its end
        os._exit(0)
    os.close(w)
    os.close(r2)
    assert os.read(r, 1) == b"1", "unshare(CLONE_NEWUSER) failed"
    os.close(r)
    for key, f in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        with open("/proc/%d/%s" % (pid, f), "w") as fh:
            fh.write("".join("%d %d %d\n" % (m["containerID"], m["hostID"], m["size"])
                             for m in cfg["linux"][key]))
    return pid, w2


def adapt(cfg, tmp, templates):
    """cfg on a private copy of the host rootfs, running sleep; sources that
    lived in the agent's (now gone) state dir become empty files/dirs here."""
    cfg = copy.deepcopy(cfg)
    rootfs = os.path.join(tmp, "rootfs")
    if not os.path.exists(rootfs):
        shutil.copytree(os.path.join(templates, "host", "rootfs"), rootfs, symlinks=True)
    cfg["root"]["path"] = rootfs
    cfg["process"]["args"] = ["/usr/bin/sleep", "3600"]
    cfg["process"]["terminal"] = False
    cfg.pop("hooks", None)
    mounts = cfg.get("mounts", [])
    for i, m in enumerate(mounts):
        src = m.get("source", "")
        if src.startswith("/") and not os.path.exists(src):
            new = os.path.join(tmp, "src-%d" % i)
            if src.endswith("/sandpit-init"):  # a file
                open(new, "a").close()
            else:
                os.makedirs(new, exist_ok=True)
                # a read-only bind with mounts inside needs their mount points
                for inner in mounts:
                    d = inner["destination"]
                    if d.startswith(m["destination"].rstrip("/") + "/"):
                        open(os.path.join(new, os.path.relpath(d, m["destination"])), "a").close()
            m["source"] = new
    ns = cfg["linux"].get("namespaces", [])
    if cfg["linux"].get("uidMappings"):  # the agent's shifted rootfs: owned by the mapped root
        uid, gid = cfg["linux"]["uidMappings"][0]["hostID"], cfg["linux"]["gidMappings"][0]["hostID"]
        for top in [rootfs] + [m["source"] for m in mounts if m["source"].startswith(tmp + "/")]:
            for d, dirs, files in os.walk(top):
                for n in [d] + [os.path.join(d, x) for x in files + dirs]:
                    os.lchown(n, uid, gid)
    cfg["linux"]["namespaces"] = [n for n in ns if not n.get("path") or n["type"] == "user"]
    return cfg


def variants(base):
    out = {}
    env0 = {}
    out["agent config"] = (base, env0)
    out["GOMAXPROCS=1"] = (base, {"GOMAXPROCS": "1"})
    out["GOGC=off"] = (base, {"GOGC": "off"})
    out["GOGC=400"] = (base, {"GOGC": "400"})
    out["GODEBUG=madvdontneed=1"] = (base, {"GODEBUG": "madvdontneed=1"})
    out["GOMAXPROCS=1 GOGC=off"] = (base, {"GOMAXPROCS": "1", "GOGC": "off"})
    out["GOMAXPROCS=1 GOGC=off madvdontneed=1"] = (base, {"GOMAXPROCS": "1", "GOGC": "off",
                                                           "GODEBUG": "madvdontneed=1"})
    out["plain binary (not a sealed memfd copy)"] = (base, {PLAIN: "1"})
    if os.environ.get("BENCH_CRUN"):  # crun 1.8 refuses cgroup v1 hybrid hosts
        out["crun (same config)"] = (base, {RUNTIME: "crun"})
    c = copy.deepcopy(base)
    c["linux"].pop("seccomp", None)
    out["no seccomp"] = (c, env0)
    if base["linux"].get("seccomp"):
        for archs in (["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], ["SCMP_ARCH_X86_64"]):
            c = copy.deepcopy(base)
            c["linux"]["seccomp"]["architectures"] = archs
            out["seccomp architectures " + "+".join(a[10:].lower() for a in archs)] = (c, env0)
    c = copy.deepcopy(base)
    c["linux"].pop("maskedPaths", None)
    c["linux"].pop("readonlyPaths", None)
    out["no masked/readonly paths"] = (c, env0)
    c = copy.deepcopy(base)
    res = c["linux"].get("resources", {})
    res.pop("devices", None)
    out["no devices rules"] = (c, env0)
    c = copy.deepcopy(base)
    c["mounts"] = [m for m in c["mounts"] if m["destination"] in ("/proc", "/dev", "/sys", "/usr")]
    out["only /proc /dev /sys /usr mounts"] = (c, env0)
    return out


def cg_make(name):
    path = os.path.join(CPUACCT, name)
    os.makedirs(path, exist_ok=True)
    return path


def usage_ns(path):
    with open(os.path.join(path, "cpuacct.usage")) as f:
        return int(f.read())


def run_one(runc, memfd, root, bundle, cid, env, cg):
    """runc run -d + runc delete --force, both in cgroup cg, with the agent's
    flags: (cpu ms, cpu ms of the run, wall ms of the run, wall ms)."""
    def enter():
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write("0")
    full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env}
    exe, fds = "/proc/self/fd/%d" % memfd, (memfd,)
    if full_env.pop(PLAIN, None):
        exe, fds = runc, ()
    other = full_env.pop(RUNTIME, None)
    if other:
        exe, fds = shutil.which(other), ()
    log = os.path.join(bundle, "runc.log")
    u0 = usage_ns(cg)
    t = time.perf_counter()
    p = subprocess.run(["runc", "--root", root, "--log", log, "--log-format", "json", "run", "--detach",
                        "--bundle", bundle, "--pid-file", os.path.join(bundle, "pid"), cid],
                       executable=exe, pass_fds=fds, env=full_env, preexec_fn=enter,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    if p.returncode != 0:
        with open(log) as f:
            sys.exit("%s run fails: %s" % (exe, f.read().strip().splitlines()[-1:]))
    run_wall = (time.perf_counter() - t) * 1000
    u1 = usage_ns(cg)
    subprocess.run(["runc", "--root", root, "--log", log, "--log-format", "json", "delete", "--force", cid],
                   executable=exe, pass_fds=fds, env=full_env, preexec_fn=enter, check=True,
                   stdin=subprocess.DEVNULL)
    wall = (time.perf_counter() - t) * 1000
    return (usage_ns(cg) - u0) / 1e6, (u1 - u0) / 1e6, run_wall, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--templates-dir")
    ap.add_argument("--runc", default=shutil.which("runc") or "runc")
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--userns", help="the agent's --userns (default: its own default)")
    ap.add_argument("--save-config", help="write the agent's config.json here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sandpit-runccpu-")
    os.chmod(tmp, 0o711)  # with a user namespace the container's root searches its way in
    cgname = "sandpit-runccpu-%d" % os.getpid()
    cg = cg_make(cgname)
    holder = None
    try:
        templates = args.templates_dir
        if not templates:
            templates = os.path.join(tmp, "templates")
            subprocess.run([os.path.join(bench.ROOT, "mk", "templates.sh"), "host", "--dir", templates],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        raw = agent_config(templates, ("--userns", args.userns) if args.userns else ())
        if args.save_config:
            with open(args.save_config, "w") as f:
                json.dump(raw, f, indent=1)
        base = adapt(raw, tmp, templates)
        for n in base["linux"]["namespaces"]:
            if n["type"] == "user" and n.get("path"):
                holder = userns_holder(base)
                n["path"] = "/proc/%d/ns/user" % holder[0]
        vs = variants(base)
        if args.only:
            vs = {k: vs[k] for k in args.only.split(",")}
        bundles = {}
        for i, (name, (cfg, env)) in enumerate(vs.items()):
            b = os.path.join(tmp, "bundle-%d" % i)
            os.makedirs(b)
            cfg = copy.deepcopy(cfg)
            cfg["linux"]["cgroupsPath"] = "/%s/c%d" % (cgname, i)
            with open(os.path.join(b, "config.json"), "w") as f:
                json.dump(cfg, f)
            bundles[name] = b
        root = os.path.join(tmp, "runc-root")
        memfd = sealed_copy(args.runc)
        res = {name: [] for name in vs}
        names = list(vs)
        for r in range(args.runs + 1):  # round 0 warms the caches, not counted
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                m = run_one(args.runc, memfd, root, bundles[name], "rc%d-%d" % (os.getpid(), r),
                            vs[name][1], cg)
                if r:
                    res[name].append(m)
        ref = statistics.median(x[0] for x in res[names[0]])
        print("| variant | CPU ms (run -d + delete) | vs first | CPU ms run -d | wall ms run -d | wall ms run + delete | n |")
        print("|---|---|---|---|---|---|---|")
        for name in names:
            med = [statistics.median(x[k] for x in res[name]) for k in range(4)]
            print("| %s | %.1f | %+.1f%% | %.1f | %.1f | %.1f | %d |" % (
                name, med[0], (med[0] - ref) * 100 / ref, med[1], med[2], med[3], len(res[name])))
        print("(medians over interleaved rounds; CPU from cpuacct.usage: runc run, runc init, runc delete)")
    finally:
        subprocess.run(["sh", "-c", "for c in $(%s --root %s list -q 2>/dev/null); do %s --root %s delete --force $c; done"
                        % (args.runc, os.path.join(tmp, "runc-root"), args.runc, os.path.join(tmp, "runc-root"))])
        shutil.rmtree(tmp, ignore_errors=True)
        if holder:
            os.close(holder[1])
            os.waitpid(holder[0], 0)
        for ctl in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", ctl, cgname)
            if os.path.isdir(p):
                for sub in sorted(os.listdir(p)):
                    if os.path.isdir(os.path.join(p, sub)):
                        try:
                            os.rmdir(os.path.join(p, sub))
                        except OSError:
                            pass
                try:
                    os.rmdir(p)
                except OSError:
                    pass


if __name__ == "__main__":
    main()
