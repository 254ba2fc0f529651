"""In-process behaviour: the data path, timeouts, bad arguments, errors, settings,
statistics and the channel tools."""

from __future__ import annotations

import array
import threading
import time

import pytest

import capnp_shm_transport as cst


def pair(name: str, **kw):
    a = cst.Channel.create(name, slot_size=kw.pop("slot_size", 64), slot_count=kw.pop("slot_count", 16), **kw)
    b = cst.Channel.open(name, timeout=2)
    return a, b


def test_send_accepts_any_contiguous_buffer(name):
    a, b = pair(name)
    with a, b:
        a.send(b"bytes")
        a.send(bytearray(b"bytearray"))
        a.send(memoryview(b"xmemoryviewx")[1:-1])
        a.send(array.array("B", [1, 2, 3]))
        a.send(b"")
        assert [b.recv(1) for _ in range(5)] == [b"bytes", b"bytearray", b"memoryview", b"\x01\x02\x03", b""]


def test_send_batch_and_recv_batch(name):
    a, b = pair(name)
    with a, b:
        assert a.send_batch([b"%d" % i for i in range(10)], timeout=1) == 10
        got = []
        while len(got) < 10:
            got += b.recv_batch(4, timeout=1)
        assert got == [b"%d" % i for i in range(10)]


def test_recv_into_too_small_keeps_the_message(name):
    a, b = pair(name)
    with a, b:
        a.send(b"0123456789")
        small = bytearray(4)
        with pytest.raises(cst.BufferTooSmall) as e:
            b.recv_into(small, timeout=1)
        assert e.value.needed == 10
        assert isinstance(e.value, ValueError)
        big = bytearray(16)
        assert b.recv_into(memoryview(big), timeout=1) == 10
        assert bytes(big[:10]) == b"0123456789"


def test_both_directions_and_stats(name):
    a, b = pair(name)
    with a, b:
        a.send(b"ping", timeout=1)
        assert b.recv(timeout=1) == b"ping"
        b.send(b"pong!", timeout=1)
        assert a.recv(timeout=1) == b"pong!"
        s = a.stats()
        assert s["outgoing"]["messages_sent"] == 1 and s["outgoing"]["bytes_sent"] == 4
        assert s["incoming"]["messages_received"] == 1 and s["incoming"]["bytes_received"] == 5
        assert a.peer_state == "alive" and b.peer_state == "alive"
        assert a.control.side == "a" and b.control.side == "b"
        assert a.control.slot_size == 64 and a.control.slot_count == 16


def test_timeouts_are_bounded(name):
    a, b = pair(name, slot_count=2)
    with a, b:
        with pytest.raises(cst.Timeout) as e:
            b.recv(0)
        assert e.value.full is False and isinstance(e.value, TimeoutError)
        start = time.monotonic()
        with pytest.raises(cst.Timeout):
            b.recv(timeout=0.2)
        took = time.monotonic() - start
        assert 0.15 <= took < 2.0, took
        a.send(b"1", 0)
        a.send(b"2", 0)
        with pytest.raises(cst.Timeout) as e:
            a.send(b"3", timeout=0.1)
        assert e.value.full is True
        with pytest.raises(cst.Timeout):
            a.send(b"3", timeout=0)


def test_other_threads_run_while_recv_blocks(name):
    a, b = pair(name)
    with a, b:
        ticks = []
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set():
                ticks.append(1)
                time.sleep(0.001)

        t = threading.Thread(target=spin)
        t.start()
        try:
            with pytest.raises(cst.Timeout):
                b.recv(timeout=0.3)
        finally:
            stop.set()
            t.join(5)
        assert len(ticks) > 20, len(ticks)


def test_a_send_from_another_thread_wakes_a_blocked_recv(name):
    a, b = pair(name)
    with a, b:
        t = threading.Timer(0.05, lambda: a.send(b"late", timeout=1))
        t.start()
        assert b.recv(timeout=5) == b"late"
        t.join(5)


def test_bad_arguments(name, names):
    with pytest.raises(cst.InvalidArgument) as e:
        cst.Channel.create(names(), slot_count=3)
    assert e.value.what == "slot_count" and "power of two" in str(e.value)
    with pytest.raises(cst.InvalidArgument):
        cst.Channel.create("bad/name")
    with pytest.raises(ValueError, match="wait must be"):
        cst.Channel.create(names(), wait="sometimes")
    with pytest.raises(ValueError, match="trust must be"):
        cst.Channel.create(names(), trust="maybe")
    with pytest.raises(ValueError, match="on_receive must be callable"):
        cst.Channel.create(names(), on_receive=42)
    with pytest.raises(ValueError, match="on_disconnect"):
        cst.Channel.open(names(), timeout=0, on_disconnect="later")
    a, b = pair(name)
    with a, b:
        with pytest.raises(ValueError, match="timeout"):
            a.send(b"x", timeout=-1)
        with pytest.raises(ValueError, match="timeout"):
            b.recv(timeout=float("nan"))
        with pytest.raises(TypeError, match="bytes-like"):
            a.send(12345)
        with pytest.raises(TypeError, match="bytes-like"):
            a.send("text")
        with pytest.raises(TypeError):
            b.recv_into(b"immutable", timeout=0)
        with pytest.raises(cst.MessageTooLarge) as e:
            a.send(bytes(a.max_message_len + 1), timeout=0)
        assert e.value.len == a.max_message_len + 1 and e.value.max_len == a.max_message_len
        a.send(bytes(a.max_message_len), timeout=0)  # the largest fits
        assert len(b.recv(1)) == a.max_message_len


def test_open_without_side_a_raises_not_found(names):
    start = time.monotonic()
    with pytest.raises(cst.NotFound):
        cst.Channel.open(names(), timeout=0.2)
    assert time.monotonic() - start < 2.0


def test_second_side_b_is_refused(name):
    a, b = pair(name)
    with a, b:
        with pytest.raises(cst.SideInUse) as e:
            cst.Channel.open(name, timeout=0.5)
        assert e.value.side == "B"


def test_closing_and_peer_closed(name):
    a, b = pair(name)
    a.send(b"last", 1)
    a.close()
    a.close()  # idempotent
    assert a.closed
    with pytest.raises(cst.ChannelClosed):
        a.send(b"x", 0)
    with pytest.raises(cst.ChannelClosed):
        a.recv(0)
    assert b.recv(1) == b"last"  # delivered before the close is reported
    with pytest.raises(cst.Closed):
        b.recv(timeout=1)
    with pytest.raises(cst.Closed):
        b.send(b"x", timeout=1)
    assert b.peer_state == "closed"
    b.close()


def test_wait_modes_local_and_remote(name):
    a = cst.Channel.create(name, slot_size=64, slot_count=16, wait="sleep", poll_us=200)
    b = cst.Channel.open(name, timeout=2, wait="spin")
    with a, b:
        assert a.control.local_wait == "sleep" and a.control.local_poll_us == 200
        assert a.control.remote_wait == "spin" and b.control.remote_wait == "sleep"
        a.control.set_wait("block", remote=True)
        assert b.control.local_wait == "block"
        b.control.set_wait("sleep", poll_us=1000)
        assert a.control.remote_wait == "sleep" and a.control.remote_poll_us == 1000
        with pytest.raises(cst.InvalidArgument):
            a.control.set_wait("sleep", poll_us=5_000_000)
        a.send(b"still works", 1)
        assert b.recv(1) == b"still works"


def test_untrusted_mode_copies_out(name):
    a = cst.Channel.create(name, slot_size=64, slot_count=16, trust="untrusted")
    b = cst.Channel.open(name, timeout=2, trust="untrusted")
    with a, b:
        a.send(b"copied")
        assert b.recv(1) == b"copied"
        a.send(b"viewed")
        with b.recv_view(1) as mv:
            assert bytes(mv) == b"viewed"


def test_list_inspect_remove(name):
    a, b = pair(name)
    with a, b:
        a.send(b"abc", 1)
        assert name in cst.list_channels()
        info = cst.inspect(name)
        assert info["slot_size"] == 64 and info["slot_count"] == 16
        assert info["a2b"]["head"] == 1 and info["a_attached"] and info["b_attached"]
        assert not info["stale"] and not cst.is_stale(name)
        assert name not in cst.remove_stale()
    assert cst.remove(name) in (True, False)
    assert name not in cst.list_channels()
    with pytest.raises(cst.NotFound):
        cst.inspect(name)


def test_repr_and_context_manager(name):
    with cst.Channel.create(name, slot_size=64, slot_count=16) as a:
        assert name in repr(a) and "not_attached" in repr(a)
    assert a.closed


def test_a_corrupt_header_is_a_typed_error_naming_the_field(name):
    a = cst.Channel.create(name, slot_size=64, slot_count=16)
    with a:
        with open(f"/dev/shm/{name}.fs.a2b", "r+b") as f:
            f.write(b"\xde\xad\xbe\xef\xde\xad\xbe\xef")  # the magic number, offset 0
        with pytest.raises(cst.Corrupt) as e:
            cst.inspect(name)
        assert e.value.field == "magic" and e.value.kind == "BadMagic"
        assert "bad magic" in str(e.value)
        with pytest.raises(cst.Corrupt):
            cst.Channel.open(name, timeout=0.5)
