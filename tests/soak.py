#!/usr/bin/python3
"""The soak: create/exec/delete cycles against a networked standalone agent that
is SIGKILLed at random points and restarted, then a leak check.

    tests/soak.py [--cycles 2000] [--kill-rate 0.05] [--concurrency 2] [--seed N]

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
plus files under the state dir beyond those at the start.
"""

import argparse
import importlib.util
import json
import os
import random
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
NODE = "198.18.100.1"


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    return r


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
        if self.agent:
            self.agent.teardown()
        sh("ip", "netns", "del", self.netns, check=False)
        sh("rm", "-rf", "--one-file-system", str(self.tmp), check=False)

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--kill-rate", type=float, default=0.05, help="chance a round has a SIGKILL (default 0.05)")
    ap.add_argument("--kill-window", type=float, default=1.5,
                    help="the kill lands uniformly in [0, this] seconds into its round (default 1.5)")
    ap.add_argument("--concurrency", type=int, default=2, help="cycles at once (default 2)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
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
        result = dict(s.counts, seed=args.seed, kill_rate=args.kill_rate, concurrency=args.concurrency,
                      errors=s.errors, leaked=left)
        print("soak result: " + json.dumps(result), flush=True)
        s.destroy()
    if left:
        print("soak: LEAKED:\n  " + "\n  ".join(left), file=sys.stderr)
        sys.exit(1)
    print(f"soak: {s.counts['cycles']} cycles, {s.counts['kills']} SIGKILLs, nothing leaked")


if __name__ == "__main__":
    main()
