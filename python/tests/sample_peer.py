"""A Python peer of the Rust demo (`capnp-shm-demo a`/`b`), speaking its `Sample`
messages (schema/demo.capnp) through pycapnp, and checking what arrives in order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import capnp

import capnp_shm_transport as cst

SCHEMA = Path(__file__).resolve().parents[2] / "schema" / "demo.capnp"
capnp.remove_import_hook()
demo_capnp = capnp.load(str(SCHEMA))


@dataclass
class Seen:
    """What arrived: counts, and one-way latencies in ns (sentNs against our clock)."""

    received: int = 0
    lost: int = 0
    out_of_order: int = 0
    decode_errors: int = 0
    next_seq: int = 0
    latencies_ns: List[int] = field(default_factory=list)

    def record(self, data: bytes, now_ns: int) -> None:
        try:
            with demo_capnp.Sample.from_bytes(data) as s:
                seq, sent_ns = s.seq, s.sentNs
        except Exception:
            self.decode_errors += 1
            return
        if seq < self.next_seq:
            self.out_of_order += 1
        else:
            self.lost += seq - self.next_seq
            self.next_seq = seq + 1
        self.received += 1
        self.latencies_ns.append(now_ns - sent_ns)


def sample(seq: int) -> bytes:
    """Sample `seq` as the demo sends it: 32 payload bytes, sent now."""
    m = demo_capnp.Sample.new_message()
    m.seq = seq
    m.sentNs = time.monotonic_ns()
    m.payload = b"\x5a" * 32
    m.control.none = None
    return m.to_bytes()


def exchange(ch: cst.Channel, to_send: int, deadline_s: float) -> Seen:
    """Sends `to_send` Samples (interleaved with receiving), then receives until the peer
    closes (everything it sent is delivered first) or `deadline_s` passes."""
    seen = Seen()
    sent = 0
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if sent < to_send:
            # Up to 64 at once, so sending keeps ahead of a peer that floods us.
            batch = [sample(i) for i in range(sent, min(sent + 64, to_send))]
            try:
                sent += ch.send_batch(batch, timeout=0)
            except cst.Timeout:  # the ring is full: receive, then try again
                pass
        try:
            batch = ch.recv_batch(256, timeout=0 if sent < to_send else 0.1)
        except cst.Timeout:
            continue
        except (cst.Closed, cst.PeerDead):
            if sent >= to_send:
                break
            raise
        now = time.monotonic_ns()
        for data in batch:
            seen.record(data, now)
    return seen
