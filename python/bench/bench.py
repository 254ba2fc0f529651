"""Benchmarks of the Python package, every figure from one run of this script.

1. Python <-> Python round trip of a 64-byte message (one process sends, the other echoes),
   this channel against multiprocessing.Pipe, multiprocessing.Queue and a Unix socket
   (socketpair), each driven from Python the same way; ratios against Pipe.
2. Rust -> Python one-way streaming: the Rust demo's side A sends its `Sample` messages
   as fast as the ring allows, Python side B drains them with recv_batch: messages/s.
3. The paced cross-language test: the Rust demo sends 1,000 Samples/s (`--pace 1ms`),
   Python receives: achieved rate, and one-way latency p50/p99 (Rust's CLOCK_MONOTONIC
   send stamp against Python's time.monotonic_ns() at receipt).

Usage: python python/bench/bench.py [--quick] [--demo PATH] [--json]
(the demo defaults to target/release/capnp-shm-demo; build it with
`cargo build --release -p capnp-shm-demo`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import capnp_shm_transport as cst

ROOT = Path(__file__).resolve().parents[2]
MSG = b"\xab" * 64


# -- 1. round trips -------------------------------------------------------------------


def echo_channel(name: str, wait: str, n: int) -> None:
    with cst.Channel.open(name, timeout=10, wait=wait) as ch:
        recv, send = ch.recv, ch.send
        for _ in range(n):
            send(recv(10), 10)


def echo_pipe(conn, n: int) -> None:
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def echo_queue(inq, outq, n: int) -> None:
    for _ in range(n):
        outq.put(inq.get())


def echo_socket(sock, n: int) -> None:
    for _ in range(n):
        sock.sendall(sock.recv(64))


def timed(loop, n: int) -> float:
    """Round trip in µs: the median of 5 batches' means (`n` in all), after `n // 10`
    warm-up round trips. The median keeps one batch disturbed by another process on a
    busy machine from setting the figure."""
    loop(n // 10)
    means = []
    for _ in range(5):
        start = time.perf_counter()
        loop(n // 5)
        means.append((time.perf_counter() - start) / (n // 5) * 1e6)
    return statistics.median(means)


def round_trips(n: int) -> dict:
    ctx = mp.get_context("spawn")
    results = {}
    total = n + n // 10
    for wait in ("block", "spin"):
        name = f"cst-bench-{os.getpid()}-{wait}"
        with cst.Channel.create(name, slot_size=64, slot_count=16, wait=wait) as ch:
            p = ctx.Process(target=echo_channel, args=(name, wait, total))
            p.start()
            recv, send = ch.recv, ch.send

            def loop(k: int) -> None:
                for _ in range(k):
                    send(MSG, 10)
                    recv(10)

            results[f"capnp_shm_transport ({wait})"] = timed(loop, n)
            p.join(30)
        cst.remove(name)

    a, b = ctx.Pipe()
    p = ctx.Process(target=echo_pipe, args=(b, total))
    p.start()

    def loop(k: int) -> None:
        for _ in range(k):
            a.send_bytes(MSG)
            a.recv_bytes()

    results["multiprocessing.Pipe"] = timed(loop, n)
    p.join(30)

    qn = max(n // 4, 1000)
    inq, outq = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=echo_queue, args=(inq, outq, qn + qn // 10))
    p.start()

    def loop(k: int) -> None:
        for _ in range(k):
            inq.put(MSG)
            outq.get()

    results["multiprocessing.Queue"] = timed(loop, qn)
    p.join(30)

    s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    p = ctx.Process(target=echo_socket, args=(s2, total))
    p.start()

    def loop(k: int) -> None:
        for _ in range(k):
            s1.sendall(MSG)
            got = 0
            while got < 64:
                got += len(s1.recv(64 - got))

    results["Unix socket (socketpair)"] = timed(loop, n)
    p.join(30)
    return results


# -- 2. and 3. Rust -> Python ------------------------------------------------------------


def rust_side_a(demo: Path, name: str, seconds: float, pace: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(demo), "a", "--name", name, "--json", "--seconds", str(seconds), "--pace", pace,
         "--slot-size", "256", "--slot-count", "256"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def drain(ch: cst.Channel, decode: bool):
    """Receives until side A closes: (count, bytes, seconds from first to last, latencies)."""
    sample = load_sample() if decode else None
    count = size = 0
    first = last = 0.0
    latencies = []
    while True:
        try:
            batch = ch.recv_batch(256, timeout=5)
        except (cst.Closed, cst.PeerDead, cst.Timeout):
            break
        now = time.perf_counter()
        if not count:
            first = now
        last = now
        count += len(batch)
        size = len(batch[-1])
        if sample is not None:
            now_ns = time.monotonic_ns()
            for data in batch:
                with sample.from_bytes(data) as s:
                    latencies.append(now_ns - s.sentNs)
    return count, size, last - first, latencies


def load_sample():
    """The demo's `Sample` type (pycapnp compiles the schema on first load: done before
    the Rust side starts, so no message waits for it)."""
    sys.path.insert(0, str(ROOT / "python" / "tests"))
    from sample_peer import demo_capnp

    return demo_capnp.Sample


def rust_to_python(demo: Path, seconds: float, pace: str, decode: bool) -> dict:
    if decode:
        load_sample()
    name = f"cst-bench-{os.getpid()}-stream"
    rust = rust_side_a(demo, name, seconds, pace)
    try:
        with cst.Channel.open(name, timeout=10) as ch:
            count, size, span, latencies = drain(ch, decode)
        rust_report = json.loads(rust.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        rust.kill()
        rust.wait(10)
        cst.remove(name)
    out = {
        "messages": count,
        "message_bytes": size,
        "rust_sent": rust_report["sent"],
        "msgs_per_sec": round(count / span) if span > 0 else 0,
    }
    if latencies:
        latencies.sort()
        q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1000
        out.update(p50_us=round(q(0.50), 1), p99_us=round(q(0.99), 1), max_us=round(latencies[-1] / 1000, 1))
        out["mean_us"] = round(statistics.fmean(latencies) / 1000, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer round trips, shorter runs")
    parser.add_argument("--demo", type=Path, default=ROOT / "target" / "release" / "capnp-shm-demo")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    n = 5_000 if args.quick else 50_000
    seconds = 1.0 if args.quick else 3.0
    results = {"round_trip_us": round_trips(n)}
    pipe = results["round_trip_us"]["multiprocessing.Pipe"]
    results["vs_pipe"] = {k: round(pipe / v, 2) for k, v in results["round_trip_us"].items()}
    results["rust_to_python_stream"] = rust_to_python(args.demo, seconds, "burst", decode=False)
    results["rust_to_python_paced_1000"] = rust_to_python(args.demo, seconds * 2, "1ms", decode=True)
    paced = results["rust_to_python_paced_1000"]
    paced["achieved_msgs_per_sec"] = round(paced["messages"] / (seconds * 2), 1)
    if args.json:
        print(json.dumps(results))
        return
    print(f"round trip, 64 B, Python <-> Python ({n} round trips; Queue {max(n // 4, 1000)}):")
    for k, v in results["round_trip_us"].items():
        print(f"  {k:32} {v:9.2f} µs   {results['vs_pipe'][k]:7.2f}x Pipe")
    s = results["rust_to_python_stream"]
    print(f"Rust -> Python streaming ({s['message_bytes']} B Samples, recv_batch): {s['msgs_per_sec']:,} msg/s "
          f"({s['messages']:,} received of {s['rust_sent']:,} sent)")
    p = results["rust_to_python_paced_1000"]
    print(f"Rust -> Python paced at 1,000 msg/s: {p['achieved_msgs_per_sec']} msg/s achieved, one-way latency "
          f"p50 {p['p50_us']} µs, p99 {p['p99_us']} µs, max {p['max_us']} µs")


if __name__ == "__main__":
    main()
