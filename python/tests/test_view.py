"""``recv_view``: zero-copy reads, the view after its block, derived views that outlive it,
and close while a view is alive."""

from __future__ import annotations

import gc

import pytest

import capnp_shm_transport as cst


def pair(name, **kw):
    a = cst.Channel.create(name, slot_size=64, slot_count=2, **kw)
    return a, cst.Channel.open(name, timeout=2)


def test_view_reads_the_message_in_place(name):
    a, b = pair(name)
    with a, b:
        a.send(b"zero-copy", 1)
        with b.recv_view(1) as mv:
            assert isinstance(mv, memoryview) and mv.readonly
            assert bytes(mv) == b"zero-copy" and mv[0] == ord("z") and len(mv) == 9
            with pytest.raises(TypeError):
                mv[0] = 1  # read-only
            assert a.stats()["outgoing"]["used_slots"] == 1  # still held
        assert a.stats()["outgoing"]["used_slots"] == 0  # released at the block's end
        a.send(b"", 1)
        with b.recv_view(1) as mv:
            assert bytes(mv) == b""


def test_the_view_is_unusable_after_its_block(name):
    a, b = pair(name)
    with a, b:
        a.send(b"short-lived", 1)
        with b.recv_view(1) as mv:
            pass
        for use in (lambda: mv[0], lambda: bytes(mv), lambda: len(mv), lambda: mv.tobytes()):
            with pytest.raises(ValueError, match="released memoryview"):
                use()


def test_a_derived_view_keeps_the_slot_until_released(name):
    a, b = pair(name)
    with a, b:
        a.send(b"held-message", 1)
        with b.recv_view(1) as mv:
            kept = mv[5:]
        # The block's view is released; the slice still reads the held message...
        assert bytes(kept) == b"message"
        # ...which the peer cannot overwrite: the ring fills without touching that slot.
        a.send(b"second", 1)
        with pytest.raises(cst.Timeout):
            a.send(b"third", 0.05)
        assert bytes(kept) == b"message"
        # And the next receive refuses while it lives.
        with pytest.raises(cst.ViewInUse) as e:
            b.recv(0)
        assert isinstance(e.value, BufferError)
        with pytest.raises(cst.ViewInUse):
            b.recv_view(0).__enter__()
        kept.release()
        del kept
        gc.collect()
        assert b.recv(1) == b"second"


def test_close_while_a_view_is_alive_keeps_the_memory(name):
    a, b = pair(name)
    a.send(b"outlives close", 1)
    with b.recv_view(1) as mv:
        kept = mv[:]
        b.close()
        assert bytes(mv) == b"outlives close"
    assert bytes(kept) == b"outlives close"
    kept.release()
    gc.collect()
    with pytest.raises(cst.ChannelClosed):
        b.recv(0)
    a.close()


def test_nested_views_are_refused(name):
    a, b = pair(name)
    with a, b:
        a.send(b"1", 1)
        a.send(b"2", 1)
        with b.recv_view(1) as mv:
            with pytest.raises(cst.ViewInUse):
                with b.recv_view(0):
                    pass
            assert bytes(mv) == b"1"
        with b.recv_view(1) as mv:
            assert bytes(mv) == b"2"


def test_view_timeout(name):
    a, b = pair(name)
    with a, b:
        with pytest.raises(cst.Timeout):
            with b.recv_view(0.05):
                pass
        a.send(b"after", 1)
        with b.recv_view(1) as mv:
            assert bytes(mv) == b"after"


def test_a_consumer_holding_an_export_of_the_view_itself(name):
    import struct

    a, b = pair(name)
    with a, b:
        a.send(struct.pack("<4I", 1, 2, 3, 4), 1)
        with b.recv_view(1) as mv:
            it = struct.iter_unpack("<I", mv)  # holds a buffer export of mv
        # mv could not be released: it and the iterator still read the held slot.
        assert [v for (v,) in it] == [1, 2, 3, 4]
        with pytest.raises(cst.ViewInUse):
            b.recv(0)
        del it
        mv.release()
        gc.collect()
        a.send(b"next", 1)
        assert b.recv(1) == b"next"
