#!/usr/bin/python3
"""The soak: create/exec/delete cycles against a networked standalone agent that
is SIGKILLed at random points and restarted, then a leak check.

    tests/soak.py [--cycles 2000] [--kill-rate 0.05] [--concurrency 2] [--seed N]
    tests/soak.py --self-test     (the orphan check against planted orphans)

`make soak` runs it with SOAK_CYCLES (2000) and SOAK_ARGS. It lives in tests/,
not bench/: it passes or fails (exit 1 on any leak or an agent that cannot be
restarted), measures nothing, and reuses the integration harness
(tests/integration/conftest.py: the Agent class, its start/restart and its leak
check, the one the suites run after every test), so "leaked" means here what it
means there. It is not in `make test`: it takes minutes.

The agent runs in a network namespace of our own (addresses from 198.18.0.0/15)
with --sandbox-cidr, so every sandbox has a veth, a lease, nft chains and map
elements; half the sandboxes use `allow`, half `deny`. In a cycle chosen with
probability --kill-rate, a timer SIGKILLs the agent at a uniformly random
moment of the cycle (during the create, the exec or the delete, whichever is in
flight); the cycle's requests then fail, the agent is restarted (it re-adopts
or removes what it finds) and the soak goes on. Whatever the kills left listed
is deleted through the API at the end, then the leak check runs: mounts under
the state dir, cgroups, runc containers, state dir entries, processes in the
sandboxes' cgroups, netns, veths, nft chains/sets/map elements, routes, leases;
plus files under the state dir beyond those at the start. Then, once the agent is
stopped, the orphan check: no process may be left that an agent of the soak
made (an agent SIGKILLed while a child it forked was paused leaves that child
reparented to pid 1 or a subreaper). Such a process is found by what it
inherited, since its parent is gone: the soak's mark in its environment
(SANDPIT_SOAK_MARK, set before the first agent starts and inherited by
everything the agents fork or spawn: runc, ip, nft, the user-namespace
helpers), or the agent binary as its executable with the soak's state dir on
its command line (a forked child that never exec'd). What may outlive an agent
is the sandboxes' processes: runc gives them the sandbox's environment, not
the agent's, and they live in the sandboxes' cgroups (the harness's check);
the soak deletes them all before stopping the agent, so after it nothing of
the soak's may be left. --self-test plants two orphans and a bystander and
checks that exactly the orphans are named.
"""

import argparse
import fcntl
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("sandpit_it", HERE / "integration" / "conftest.py")
it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(it)

CIDR = "198.18.64.0/24"
MARK_ENV = "SANDPIT_SOAK_MARK"
NODE = "198.18.100.1"


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    return r


def proc_read(pid, name):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return None


def proc_state(pid):
    stat = proc_read(pid, "stat") or b""
    # "pid (comm) S ppid ...": comm may hold spaces and parentheses
    rest = stat[stat.rfind(b")") + 2:].split()
    return (rest[0].decode() if rest else "?"), (int(rest[1]) if len(rest) > 1 else 0)


def orphans(mark, agent_bin, state_dir, cgroup_parent=None, exclude=()):
    """Processes a soak agent made, alive now: MARK in their environment, or
    AGENT_BIN as their executable with STATE_DIR on their command line; not
    in a sandbox's cgroup (under CGROUP_PARENT: the harness's check names
    those) and not in EXCLUDE. Returns [(pid, cmdline, state, ppid)]."""
    want = f"{MARK_ENV}={mark}".encode()
    agent_bin = os.path.realpath(agent_bin)
    skip = {os.getpid(), *exclude}
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in skip:
            continue
        pid = int(d)
        env = proc_read(pid, "environ") or b""
        cmd = proc_read(pid, "cmdline") or b""
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""  # a kernel thread, a zombie, or gone
        ours = want in env.split(b"\0") or (exe == agent_bin and str(state_dir).encode() in cmd)
        if not ours:
            continue
        cg = (proc_read(pid, "cgroup") or b"").decode(errors="replace")
        if cgroup_parent and f"/{cgroup_parent}/" in cg:
            continue
        state, ppid = proc_state(pid)
        if state == "?":
            continue  # exited while we looked
        found.append((pid, cmd.replace(b"\0", b" ").decode(errors="replace").strip(), state, ppid))
    return found


def describe(o):
    pid, cmd, state, ppid = o
    return f"orphan pid {pid} (state {state}, parent {ppid}): {cmd}"


def state_files(agent):
    """Files under the state dir, outside the per-sandbox entries (checked by
    the harness) and the agent's own lock/socket/cache files listed at start."""
    out = set()
    for dirpath, dirs, files in os.walk(agent.state_dir):
        if Path(dirpath) == agent.state_dir / "sandboxes":
            dirs[:] = []
            continue
        for f in files:
            out.add(os.path.relpath(os.path.join(dirpath, f), agent.state_dir))
    return out


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.suffix = it.rand_suffix(6)
        self.netns = f"spsk-{self.suffix}"
        self.tmp = Path(tempfile.mkdtemp(prefix="sandpit-soak-"))
        self.agent = None
        self.counts = {"cycles": 0, "ok": 0, "kills": 0, "restarts": 0, "failed_cycles": 0, "cleanup_deletes": 0}
        self.errors = {}
        self.lock = threading.Lock()

    def setup(self):
        # inherited by every agent and all it forks or spawns (the orphan check)
        os.environ[MARK_ENV] = self.suffix
        sh("ip", "netns", "add", self.netns)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        # an uplink for the node address (no dummy module everywhere: a veth pair inside the netns)
        sh("ip", "-n", self.netns, "link", "add", f"spskd-{self.suffix}", "type", "veth", "peer", "name",
           f"spske-{self.suffix}")
        sh("ip", "-n", self.netns, "link", "set", f"spske-{self.suffix}", "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{NODE}/24", "dev", f"spskd-{self.suffix}")
        sh("ip", "-n", self.netns, "link", "set", f"spskd-{self.suffix}", "up")
        templates = self.tmp / "templates"
        it.build_templates(templates)
        self.agent = it.Agent(f"soak-{self.suffix}", templates, netns=self.netns, net_table=f"sandpit-sk{self.suffix}",
                              extra_args=["--sandbox-cidr", CIDR, "--net-table", f"sandpit-sk{self.suffix}"])
        self.agent.start()
        self.baseline = state_files(self.agent)

    def destroy(self):
        """Stops the agent and removes the rest; returns the orphan check's
        findings (killed once named: a paused orphan would never end)."""
        found = []
        if self.agent:
            self.agent.teardown()
            # the agent is gone; what it made dies with it (PR_SET_PDEATHSIG
            # children get their signal as it exits) or is an orphan
            deadline = time.monotonic() + 10
            while True:
                found = orphans(self.suffix, it.AGENT_BIN, self.agent.state_dir, self.agent.cgroup_parent)
                if not found or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            for pid, *_ in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        sh("ip", "netns", "del", self.netns, check=False)
        sh("rm", "-rf", "--one-file-system", str(self.tmp), check=False)
        return [describe(o) for o in found]

    def note(self, what):
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def cycle(self, client):
        """One create/exec/delete; returns True when every step answered as it should."""
        policy = {"egress": self.rng.choice(["allow", "deny"])}
        r = client.post("/v1/sandboxes", {"template": "host", "network": policy, "timeout": 600})
        if r.status != 201:
            self.note(f"create {r.status}")
            return False
        sid = r.json()["id"]
        e = client.exec(sid, shell="echo soak-$((6*7))", http_timeout=60)
        ok = e.status == 200 and e.exit is not None and e.stdout == "soak-42\n"
        if not ok:
            self.note(f"exec {e.status}")
        d = client.delete(f"/v1/sandboxes/{sid}", timeout=120)
        if d.status != 204:
            self.note(f"delete {d.status}")
            return False
        return ok

    def worker(self, n):
        client = it.Client(unix_path=self.agent.socket, timeout=120)
        for _ in range(n):
            try:
                good = self.cycle(client)
            except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
                self.note(f"{type(e).__name__}")
                good = False
            with self.lock:
                self.counts["cycles"] += 1
                self.counts["ok" if good else "failed_cycles"] += 1

    def run(self):
        args = self.args
        t0 = time.monotonic()
        done = 0
        # rounds of `concurrency` cycles at once; a kill, when drawn, lands at a
        # random moment of the round
        while done < args.cycles:
            k = min(args.concurrency, args.cycles - done)
            per = [1] * k
            threads = [threading.Thread(target=self.worker, args=(p,)) for p in per]
            killer = None
            if self.rng.random() < args.kill_rate:
                delay = self.rng.uniform(0, args.kill_window)
                killer = threading.Timer(delay, self.kill)
                killer.start()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if killer:
                killer.join()
            if not self.agent.alive():
                self.agent.start()
                self.counts["restarts"] += 1
            done += k
            if done % 100 < k:
                print(f"soak: {done}/{args.cycles} cycles, {self.counts['kills']} kills, "
                      f"{time.monotonic() - t0:.0f} s", flush=True)
        self.counts["seconds"] = round(time.monotonic() - t0)

    def kill(self):
        if self.agent.alive():
            self.agent.kill9()
            with self.lock:
                self.counts["kills"] += 1

    def check(self):
        """Delete what the kills left, then the harness's leak check."""
        c = self.agent.client
        r = c.get("/v1/sandboxes", timeout=30)
        for s in r.json()["sandboxes"]:
            self.counts["cleanup_deletes"] += 1
            c.delete(f"/v1/sandboxes/{s['id']}", timeout=120)
        left = []
        deadline = time.monotonic() + 30
        while True:
            left = self.agent.leftovers()
            extra = sorted(state_files(self.agent) - self.baseline)
            left += [f"state file {f}" for f in extra if not f.startswith("images/")]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return left


def self_test():
    """Plants two harmless orphans and a bystander, checks that the orphan
    check names exactly the orphans, then kills all three (by pid)."""
    mark = "selftest-" + it.rand_suffix(6)
    state_dir = Path(tempfile.mkdtemp(prefix="sandpit-soak-selftest-"))
    # a pipe already full: the agent binary's --help blocks writing to it,
    # doing nothing else
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)

    def plant(argv, env):
        # sh starts it in the background and exits: it is reparented, as a
        # killed agent's child is
        p = subprocess.run(["sh", "-c", f'"$@" >&{w} 2>&{w} </dev/null & echo $!', "sh", *argv], env=env,
                           pass_fds=(w,), capture_output=True, text=True, timeout=30)
        return int(p.stdout.strip())

    clean = {k: v for k, v in os.environ.items() if k != MARK_ENV}
    planted = {
        # a forked agent child that never exec'd: the binary, the state dir on its command line
        plant([str(it.AGENT_BIN), "--help", "--state-dir", str(state_dir)], clean): "agent binary",
        # something an agent spawned: the mark in its environment
        plant(["sleep", "600"], dict(clean, **{MARK_ENV: mark})): "sleep with the mark",
    }
    bystander = plant(["sleep", "600"], clean)
    ok = True
    try:
        # the planted processes have exec'd once /proc shows their executable
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = orphans(mark, it.AGENT_BIN, state_dir)
            if {o[0] for o in found} >= set(planted):
                break
            time.sleep(0.05)
        for o in found:
            print("self-test: found " + describe(o))
        got = {o[0] for o in found}
        for pid, what in planted.items():
            if pid not in got:
                print(f"self-test: FAILED: the planted {what} (pid {pid}) was not found", file=sys.stderr)
                ok = False
        if bystander in got or got - set(planted):
            print(f"self-test: FAILED: named a process it should not: {sorted(got - set(planted))}",
                  file=sys.stderr)
            ok = False
    finally:
        for pid in [*planted, bystander]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.close(r)
        os.close(w)
        os.rmdir(state_dir)
    if not ok:
        sys.exit(1)
    print(f"self-test: the orphan check named the {len(planted)} planted orphans and not the bystander")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--kill-rate", type=float, default=0.05, help="chance a round has a SIGKILL (default 0.05)")
    ap.add_argument("--kill-window", type=float, default=1.5,
                    help="the kill lands uniformly in [0, this] seconds into its round (default 1.5)")
    ap.add_argument("--concurrency", type=int, default=2, help="cycles at once (default 2)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--self-test", action="store_true",
                    help="check the orphan check against planted orphans, and nothing else")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if os.geteuid() != 0:
        sys.exit("tests/soak.py: run as root (runc, cgroups, network namespaces)")
    s = Soak(args)
    left = ["the soak did not finish"]
    try:
        s.setup()
        s.run()
        left = s.check()
    finally:
        left += s.destroy()
        result = dict(s.counts, seed=args.seed, kill_rate=args.kill_rate, concurrency=args.concurrency,
                      errors=s.errors, leaked=left)
        print("soak result: " + json.dumps(result), flush=True)
    if left:
        print("soak: LEAKED:\n  " + "\n  ".join(left), file=sys.stderr)
        sys.exit(1)
    print(f"soak: {s.counts['cycles']} cycles, {s.counts['kills']} SIGKILLs, nothing leaked")


if __name__ == "__main__":
    main()
