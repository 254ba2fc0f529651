"""A Python peer run as a child process by the tests: ``peer.py ROLE NAME [N]``."""

from __future__ import annotations

import signal
import struct
import sys
import threading
import time

import capnp_shm_transport as cst

PATTERN = bytes(range(256)) * 2


def message(i: int) -> bytes:
    """Message ``i``: its number, then ``i % 61`` pattern bytes starting at ``i % 251``."""
    start = i % 251
    return struct.pack("<Q", i) + PATTERN[start : start + i % 61]


def stream(ch: cst.Channel, n: int) -> None:
    """Sends messages 0..n in a thread while checking the n messages that arrive."""
    failure = []

    def send() -> None:
        try:
            for i in range(n):
                ch.send(message(i), timeout=30)
        except BaseException as e:  # reported by the main thread
            failure.append(e)

    sender = threading.Thread(target=send)
    sender.start()
    got = 0
    while got < n:
        for data in ch.recv_batch(256, timeout=30):
            if data != message(got):
                raise SystemExit(f"message {got} differs: {data[:16]!r}")
            got += 1
    sender.join(60)
    if failure:
        raise failure[0]


def main() -> None:
    role, name = sys.argv[1], sys.argv[2]
    if role == "stream":  # side B of the 100,000-message test
        n = int(sys.argv[3])
        with cst.Channel.open(name, timeout=10) as ch:
            stream(ch, n)
        print("ok", flush=True)
    elif role == "block-recv":  # opens, says so, then blocks in recv until interrupted
        # Ctrl-C as a terminal delivers it: Python's own handler. A shell that started the
        # test run in the background leaves SIGINT ignored, and Python then installs none.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ch = cst.Channel.open(name, timeout=10)
        print("ready", flush=True)
        start = time.monotonic()
        try:
            ch.recv(timeout=None)
        except KeyboardInterrupt:
            print(f"interrupted {time.monotonic() - start:.3f}", flush=True)
            ch.close()
            sys.exit(42)
        sys.exit(1)
    elif role == "create-and-hang":  # side A that gets killed
        ch = cst.Channel.create(name, slot_size=64, slot_count=16)
        print("ready", flush=True)
        time.sleep(60)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
