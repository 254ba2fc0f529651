#!/usr/bin/env python3
"""Wake-ups per second per thread of an idle `capnp-shm-demo run` (issue 20).

Runs `capnp-shm-demo run --pace off --wait block --seconds N --json` (N = 10 by default),
samples /proc/<pid>/task/*/status (voluntary + involuntary context switches, per thread
name from comm) of side A (the process started) and side B (its child) at 1 s and at
N - 1 s, and prints the rates over that window (and each thread's CPU from schedstat, in µs
per second), then the demo's own report (CPU per side).

    scripts/idle-wakeups.py [path/to/capnp-shm-demo] [seconds]
"""
import json
import os
import subprocess
import sys
import time

exe = sys.argv[1] if len(sys.argv) > 1 else "target/release/capnp-shm-demo"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0


def threads(pid):
    """{thread name: (context switches, ns on CPU)} of one process (names summed)."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"{base}/{tid}/status") as f:
                status = f.read()
            with open(f"{base}/{tid}/schedstat") as f:
                cpu_ns = int(f.read().split()[0])
        except OSError:
            continue
        n = sum(int(l.split()[1]) for l in status.splitlines()
                if l.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        name = "main" if tid == str(pid) else ("shm-recv" if comm.startswith("shm-recv") else comm)
        old = out.get(name, (0, 0))
        out[name] = (old[0] + n, old[1] + cpu_ns)
    return out


def child_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = f.read().split()
    return int(kids[0]) if kids else None


proc = subprocess.Popen([exe, "run", "--pace", "off", "--wait", "block", "--seconds",
                         str(seconds), "--json"], stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, text=True)
started = time.monotonic()
time.sleep(1.0)
a, b = proc.pid, child_of(proc.pid)
first = (time.monotonic(), threads(a), threads(b))
time.sleep(max(seconds - 2.0, 0.5))
last = (time.monotonic(), threads(a), threads(b))
out, _ = proc.communicate(timeout=seconds + 30)
span = last[0] - first[0]
for side, i in (("side_a", 1), ("side_b", 2)):
    for name in sorted(last[i]):
        before = first[i].get(name, (0, 0))
        rate = (last[i][name][0] - before[0]) / span
        cpu_us = (last[i][name][1] - before[1]) / span / 1000
        print(f"{side} {name:<16} {rate:8.1f} wake-ups/s {cpu_us:8.1f} µs CPU/s")
report = json.loads(out.strip().splitlines()[-1])
for side in ("a", "b"):
    print(f"side_{side} cpu_percent {report[side]['cpu_percent']}")
