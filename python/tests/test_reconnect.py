"""Side B's reconnection policy: B re-attaches to a recreated side A and goes on."""

from __future__ import annotations

import threading

import pytest

import capnp_shm_transport as cst


def test_side_b_reconnects_to_a_recreated_side_a(name):
    events = []
    reconnected = threading.Event()

    def on_event(event, value):
        events.append(event)
        if event == "reconnected":
            reconnected.set()

    a = cst.Channel.create(name, slot_size=64, slot_count=16)
    b = cst.Channel.open(
        name,
        timeout=2,
        reconnect=cst.ReconnectPolicy(retry_interval=0.02, max_attempts=0, max_wait=10.0),
        on_disconnect="wait",
        on_event=on_event,
    )
    with b:
        generation = b.control.generation
        a.send(b"first life", 1)
        assert b.recv(1) == b"first life"
        a.close()
        a = cst.Channel.create(name, slot_size=64, slot_count=16)
        with a:
            a.send(b"second life", 1)
            assert b.recv(timeout=5) == b"second life"
            assert b.control.generation != generation
            b.send(b"hello again", 1)
            assert a.recv(1) == b"hello again"
        assert reconnected.wait(5), events


def test_without_a_policy_side_b_fails_on_close(name):
    a = cst.Channel.create(name, slot_size=64, slot_count=16)
    b = cst.Channel.open(name, timeout=2)
    with b:
        a.close()
        with pytest.raises(cst.Closed):
            b.recv(1)


def test_reconnect_policy_values():
    p = cst.ReconnectPolicy.unlimited()
    assert p.max_attempts == 0 and p.max_wait == 0.0
    with pytest.raises(ValueError, match="retry_interval"):
        cst.Channel.open("cst-py-never", timeout=0, reconnect=cst.ReconnectPolicy(retry_interval=-1))
