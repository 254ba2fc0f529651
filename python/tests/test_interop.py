"""Cross-language, both directions: the Rust demo's side A with a Python side B, and a
Python side A with the Rust demo's side B, exchanging the demo's `Sample` messages. The
Rust side's `--json` report judges what Python sent (no loss, reordering or decode
error); Python checks what Rust sent the same way."""

from __future__ import annotations

import json
import subprocess

import pytest

pytest.importorskip("capnp")

import capnp_shm_transport as cst  # noqa: E402
from sample_peer import exchange  # noqa: E402

TO_SEND = 20_000  # sent in the first fraction of the Rust side's 3 s


def report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def judge(rust: dict, seen, python_sent: int) -> None:
    assert rust["lost"] == 0 and rust["out_of_order"] == 0 and rust["decode_errors"] == 0, rust
    assert rust["received"] == python_sent, rust
    assert seen.lost == 0 and seen.out_of_order == 0 and seen.decode_errors == 0, seen
    assert seen.received == rust["sent"] > 0, (seen.received, rust)


def test_rust_side_a_with_python_side_b(name, demo):
    rust = subprocess.Popen(
        [str(demo), "a", "--name", name, "--json", "--seconds", "3", "--slot-size", "256", "--slot-count", "256"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with cst.Channel.open(name, timeout=10) as b:
            seen = exchange(b, TO_SEND, deadline_s=30)
        judge(report(rust), seen, TO_SEND)
    finally:
        rust.kill()
        rust.wait(10)


def test_python_side_a_with_rust_side_b(name, demo):
    with cst.Channel.create(name, slot_size=256, slot_count=256) as a:
        rust = subprocess.Popen(
            [str(demo), "b", "--name", name, "--json", "--seconds", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            seen = exchange(a, TO_SEND, deadline_s=30)
            rust_report = report(rust)
        finally:
            rust.kill()
            rust.wait(10)
    judge(rust_report, seen, TO_SEND)
