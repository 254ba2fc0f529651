"""The pycapnp helpers: send_message / recv_message with the demo's `Sample` schema, and a
malformed message as a typed `Decode` error."""

from __future__ import annotations

import pytest

pytest.importorskip("capnp")

import capnp_shm_transport as cst  # noqa: E402
from sample_peer import demo_capnp  # noqa: E402


def test_send_message_and_recv_message(name):
    a = cst.Channel.create(name, slot_size=256, slot_count=16)
    b = cst.Channel.open(name, timeout=2)
    with a, b:
        m = demo_capnp.Sample.new_message()
        m.seq = 7
        m.sentNs = 123
        m.payload = b"hello"
        m.control.ping = None
        a.send_message(m, timeout=1)
        r = b.recv_message(demo_capnp.Sample, timeout=1)
        assert (r.seq, r.sentNs, r.payload, r.control.which) == (7, 123, b"hello", "ping")


def test_a_message_too_large_for_the_ring(name):
    a = cst.Channel.create(name, slot_size=64, slot_count=16)
    with a:
        m = demo_capnp.Sample.new_message()
        m.payload = bytes(a.max_message_len)
        with pytest.raises(cst.MessageTooLarge):
            a.send_message(m, timeout=0)


def test_a_message_larger_than_a_slot_round_trips(name):
    a = cst.Channel.create(name, slot_size=64, slot_count=16)
    b = cst.Channel.open(name, timeout=2)
    with a, b:
        m = demo_capnp.Sample.new_message()
        m.seq = 3
        m.payload = bytes(range(256)) * 4  # 1 KiB through 64-byte slots
        a.send_message(m, timeout=1)
        r = b.recv_message(demo_capnp.Sample, timeout=1)
        assert (r.seq, r.payload) == (3, bytes(range(256)) * 4)


def test_a_malformed_message_is_a_decode_error(name):
    a = cst.Channel.create(name, slot_size=256, slot_count=16)
    b = cst.Channel.open(name, timeout=2)
    with a, b:
        # A segment table claiming 1,000 words in a 16-byte message.
        a.send(b"\x00\x00\x00\x00\xe8\x03\x00\x00" + bytes(8), timeout=1)
        with pytest.raises(cst.Decode):
            r = b.recv_message(demo_capnp.Sample, timeout=1)
            r.seq  # pycapnp may defer the failure to the first read
        a.send(b"\x00", timeout=1)  # not even a segment table
        with pytest.raises(cst.Decode):
            b.recv_message(demo_capnp.Sample, timeout=1)
        # The channel goes on.
        m = demo_capnp.Sample.new_message()
        m.seq = 1
        a.send_message(m, timeout=1)
        assert b.recv_message(demo_capnp.Sample, timeout=1).seq == 1
