"""``on_receive`` and ``on_event``: the receive thread calls Python, survives a raising
callback (reported through ``sys.unraisablehook``), and direct receives are refused."""

from __future__ import annotations

import sys
import threading
import time

import pytest

import capnp_shm_transport as cst


def wait_for(predicate, seconds=5.0):
    """Polls `predicate` (only where nothing signals the state: a thread's end)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_on_receive_gets_every_message(name):
    got = []
    done = threading.Event()

    def on_receive(data: bytes) -> None:
        got.append(data)
        if len(got) == 1000:
            done.set()

    a = cst.Channel.create(name, slot_size=64, slot_count=16, on_receive=on_receive)
    b = cst.Channel.open(name, timeout=2)
    with a, b:
        assert a.receive_thread_running()
        for i in range(1000):
            b.send(b"%d" % i, timeout=5)
        assert done.wait(10)
        assert got == [b"%d" % i for i in range(1000)]
        with pytest.raises(cst.ReceiverInUse):
            a.recv(0)
    assert not a.receive_thread_running()


def test_a_raising_callback_is_reported_and_the_thread_goes_on(name, monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u))
    got = []
    both = threading.Event()

    def on_receive(data: bytes) -> None:
        if data == b"bad":
            raise RuntimeError("callback failed")
        got.append(data)
        if len(got) == 2:
            both.set()

    a = cst.Channel.create(name, slot_size=64, slot_count=16, on_receive=on_receive)
    b = cst.Channel.open(name, timeout=2)
    with a, b:
        b.send(b"before", 1)
        b.send(b"bad", 1)
        b.send(b"after", 1)
        assert both.wait(5), got
        assert got == [b"before", b"after"]
        assert len(reported) == 1
        assert isinstance(reported[0].exc_value, RuntimeError)
        assert str(reported[0].exc_value) == "callback failed"
        assert a.receive_thread_running()
        assert a.take_receive_error() is None


def test_on_event_reports_the_peer_closing(name):
    events = []
    closed = threading.Event()

    def on_event(event, value):
        events.append((event, value))
        if event == "peer_closed":
            closed.set()

    a = cst.Channel.create(name, slot_size=64, slot_count=16, on_event=on_event)
    b = cst.Channel.open(name, timeout=2)
    with a:
        b.close()
        assert closed.wait(5), events
        assert ("peer_closed", None) in events
        assert a.peer_state == "closed"


def test_on_receive_thread_on_side_b_ends_when_a_closes(name):
    got = []
    a = cst.Channel.create(name, slot_size=64, slot_count=16)
    b = cst.Channel.open(name, timeout=2, on_receive=got.append)
    with b:
        a.send(b"last words", 1)
        a.close()
        assert wait_for(lambda: not b.receive_thread_running())
        assert got == [b"last words"]


def test_a_channel_collected_without_close_does_not_hang(names):
    """The receive thread may wait for the GIL in its callback while the channel is
    collected: its drop must release the GIL (else the interpreter hangs)."""
    import subprocess

    name = names()
    code = f"""
import gc, time, capnp_shm_transport as cst
got = []
a = cst.Channel.create({name!r}, slot_size=64, slot_count=16, on_receive=lambda d: got.append(d) or time.sleep(0.001), on_event=lambda e, v: None)
b = cst.Channel.open({name!r}, timeout=2)
for i in range(200):
    b.send(b"x", timeout=1)
del a
gc.collect()
b.close()
print("ok", len(got) > 0)
"""
    # cwd="/": `-c` puts the working directory first on sys.path, where python/ would
    # shadow the installed package with its sources.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "True"]
