"""Across processes: Python to Python in both directions at once (100,000 messages each
way, contents checked), Ctrl-C during a blocking receive, and a killed peer."""

from __future__ import annotations

import signal
import time

import pytest

import capnp_shm_transport as cst
from conftest import python_child
from peer import stream

N = 100_000


def test_100k_messages_each_way_between_two_python_processes(name):
    with cst.Channel.create(name, slot_size=128, slot_count=256) as a:
        child = python_child("peer.py", "stream", name, str(N))
        try:
            start = time.monotonic()
            stream(a, N)  # sends 0..N while checking the N that arrive
            out, err = child.communicate(timeout=60)
        finally:
            child.kill()
            child.wait(10)
        assert child.returncode == 0, err
        assert out.strip() == "ok"
        stats = a.stats()
        assert stats["outgoing"]["messages_sent"] == N and stats["incoming"]["messages_received"] == N
        print(f"100k each way: {time.monotonic() - start:.2f} s")


def test_ctrl_c_interrupts_a_blocking_recv_promptly(name):
    with cst.Channel.create(name, slot_size=64, slot_count=16):
        child = python_child("peer.py", "block-recv", name)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.2)  # let it block in recv (nothing signals "blocked")
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=10)
            took = time.monotonic() - sent
        finally:
            child.kill()
            child.wait(10)
        assert child.returncode == 42, (out, err)
        assert out.startswith("interrupted"), out
        assert took < 1.0, took  # one 50 ms slice, plus process exit


def test_a_killed_peer_raises_peer_dead(name):
    child = python_child("peer.py", "create-and-hang", name)
    try:
        assert child.stdout.readline().strip() == "ready"
        b = cst.Channel.open(name, timeout=5)
        with b:
            child.kill()
            child.wait(10)
            start = time.monotonic()
            with pytest.raises(cst.PeerDead):
                b.recv(timeout=5)
            assert time.monotonic() - start < 3.0
            with pytest.raises(cst.PeerDead):
                b.send(b"anyone?", timeout=1)
            assert b.peer_state == "dead"
    finally:
        child.kill()
        child.wait(10)
