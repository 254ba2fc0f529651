"""The public :class:`Channel`: a thin layer over the native channel adding the context
manager, ``recv_view``, the reconnection policy and the pycapnp helpers."""

from __future__ import annotations

import atexit
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, Type

from . import _native
from ._view import RecvView

#: Seconds, ``0`` (try once) or ``None`` (no limit).
TimeoutArg = Optional[float]

_open_channels: "weakref.WeakSet[Channel]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Receive and liveness threads call into Python: stop them before the interpreter
    # finalizes, for channels the program did not close.
    for ch in list(_open_channels):
        ch.close()


@dataclass(frozen=True)
class ReconnectPolicy:
    """How side B re-attaches after side A died or closed. Zeros mean unlimited."""

    retry_interval: float = 0.1
    """Seconds between attempts."""
    max_attempts: int = 50
    """Attempts before giving up (0: unlimited)."""
    max_wait: float = 5.0
    """Seconds before giving up (0: unlimited)."""

    @classmethod
    def unlimited(cls) -> "ReconnectPolicy":
        """Never gives up, retrying every 100 ms."""
        return cls(max_attempts=0, max_wait=0.0)


class Channel:
    """One side of a duplex shared-memory channel.

    Side A creates it (:meth:`create`), side B opens it (:meth:`open`); each side then
    sends bytes-like messages and receives the other side's. Every wait releases the GIL
    and checks for signals at least every 50 ms, so Ctrl-C raises ``KeyboardInterrupt``.

    >>> import capnp_shm_transport as cst, os
    >>> name = f"doc-{os.getpid()}"
    >>> with cst.Channel.create(name, slot_size=64, slot_count=16) as a, \\
    ...      cst.Channel.open(name, timeout=1) as b:
    ...     a.send(b"ping")
    ...     b.recv(timeout=1)
    b'ping'
    """

    __slots__ = ("_native", "_name", "control", "__weakref__")

    def __init__(self, native: Any) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        self._native = native
        #: Live settings and statistics (:class:`Control`).
        self.control: _native.Control = _native.control_of(native)
        self._name: str = self.control.name
        _open_channels.add(self)

    @classmethod
    def create(
        cls,
        name: str,
        *,
        slot_size: Optional[int] = None,
        slot_count: Optional[int] = None,
        wait: str = "block",
        poll_us: int = 0,
        trust: str = "cooperating",
        dead_after: Optional[float] = None,
        replace_live: bool = False,
        sigbus_guard: bool = True,
        burst: Optional[int] = None,
        on_receive: Optional[Callable[[bytes], Any]] = None,
        on_event: Optional[Callable[[str, Optional[int]], Any]] = None,
    ) -> "Channel":
        """Side A: creates channel ``name`` (segments ``/dev/shm/<name>.fs.a2b`` and
        ``.fs.b2a``).

        ``slot_size`` is the payload bytes per slot, ``slot_count`` the slots per
        direction (a power of two); a message longer than a slot covers several, up to
        the whole ring (``control.max_message_len``). ``wait`` is how this side waits when idle:
        ``"block"`` (spin briefly, then sleep on a futex until woken; the default),
        ``"spin"`` (busy-poll) or ``"sleep"`` (sleep ``poll_us`` µs per idle round).
        ``trust="untrusted"`` copies each message out of its slot before use.
        ``on_receive(data: bytes)`` receives through a thread of the library that calls
        it with the GIL held for the call only; an exception it raises is reported
        through ``sys.unraisablehook`` and the thread goes on with the next message.
        ``on_event(name, value)`` reports peer events (``"peer_dead"``,
        ``"peer_closed"``, ``"peer_attached"``, ...).
        """
        return cls(
            _native.create(
                name,
                slot_size=slot_size,
                slot_count=slot_count,
                wait=wait,
                poll_us=poll_us,
                trust_mode=trust,
                dead_after=dead_after,
                replace_live=replace_live,
                sigbus_guard=sigbus_guard,
                burst=burst,
                on_receive=on_receive,
                on_event=on_event,
            )
        )

    @classmethod
    def open(
        cls,
        name: str,
        *,
        timeout: TimeoutArg = 5.0,
        wait: str = "block",
        poll_us: int = 0,
        trust: str = "cooperating",
        dead_after: Optional[float] = None,
        sigbus_guard: bool = True,
        burst: Optional[int] = None,
        reconnect: Optional[ReconnectPolicy] = None,
        on_disconnect: str = "fail",
        on_receive: Optional[Callable[[bytes], Any]] = None,
        on_event: Optional[Callable[[str, Optional[int]], Any]] = None,
    ) -> "Channel":
        """Side B: opens channel ``name``, waiting up to ``timeout`` seconds for side A
        (:class:`NotFound` after that).

        ``reconnect`` re-attaches to a restarted side A under that policy;
        ``on_disconnect`` says what sends and receives do meanwhile: ``"fail"`` (raise
        :class:`Reconnecting`), ``"wait"`` (wait within their own timeout) or
        ``"keep_waiting"``. Other arguments as in :meth:`create`.
        """
        policy = None
        if reconnect is not None:
            policy = (reconnect.retry_interval, reconnect.max_attempts, reconnect.max_wait)
        return cls(
            _native.open(
                name,
                timeout=timeout,
                wait=wait,
                poll_us=poll_us,
                trust_mode=trust,
                dead_after=dead_after,
                sigbus_guard=sigbus_guard,
                burst=burst,
                reconnect_policy=policy,
                disconnect=on_disconnect,
                on_receive=on_receive,
                on_event=on_event,
            )
        )

    # -- data path -----------------------------------------------------------------

    def send(self, data: Any, timeout: TimeoutArg = None) -> None:
        """Sends one message: any contiguous bytes-like object, read in place (no
        intermediate copy). Waits for a free slot up to ``timeout`` (``None``: no limit,
        ``0``: try once); raises :class:`Timeout`, :class:`Closed`, :class:`PeerDead`,
        :class:`MessageTooLarge` (longer than :attr:`max_message_len`)."""
        self._native.send(data, timeout)

    def send_batch(self, messages: Iterable[Any], timeout: TimeoutArg = None) -> int:
        """Sends several messages with one free-space check; returns how many were sent
        (all of them, or those that fit when the timeout ended; :class:`Timeout` when
        not even one did)."""
        return self._native.send_batch(messages, timeout)

    def recv(self, timeout: TimeoutArg = None) -> bytes:
        """Receives one message as ``bytes`` (one copy out of the slot)."""
        return self._native.recv(timeout)

    def recv_into(self, buffer: Any, timeout: TimeoutArg = None) -> int:
        """Receives one message into a writable buffer (``bytearray``, ``memoryview``,
        ...) and returns its length. A message longer than the buffer raises
        :class:`BufferTooSmall` (``needed``) and is delivered by the next receive."""
        return self._native.recv_into(buffer, timeout)

    def recv_batch(self, max: int = 64, timeout: TimeoutArg = None) -> List[bytes]:
        """Receives up to ``max`` messages (waiting for the first) as a list of
        ``bytes``, releasing their slots together."""
        return self._native.recv_batch(max, timeout)

    def recv_view(self, timeout: TimeoutArg = None) -> RecvView:
        """Zero-copy receive: ``with ch.recv_view(1.0) as mv:`` gives a read-only
        ``memoryview`` over the message in its slot. The slot is released when the block
        ends and no memoryview derived from ``mv`` is left; ``mv`` itself is released
        then (using it raises ``ValueError``). A derived view kept past the block keeps
        the slot held: receives raise :class:`ViewInUse` until it is released."""
        return RecvView(self._native, timeout)

    # -- Cap'n Proto (pycapnp) -------------------------------------------------------

    def send_message(self, builder: Any, timeout: TimeoutArg = None) -> None:
        """Sends a pycapnp message builder (``_MessageBuilder`` or a struct builder) in
        the standard framing. pycapnp's ``to_bytes()`` flattens it into one ``bytes``
        (a copy); the send copies that into the slot."""
        self._native.send(builder.to_bytes(), timeout)

    def recv_message(self, schema: Type[Any], timeout: TimeoutArg = None, **reader_options: Any) -> Any:
        """Receives one message and returns ``schema``'s reader over it (``schema`` is a
        pycapnp struct type such as ``demo_capnp.Sample``). The slot is copied once into
        ``bytes``, which pycapnp's ``from_bytes`` reads in place (no second copy); the
        reader stays valid after the slot is released. A malformed message raises
        :class:`Decode` with pycapnp's message."""
        from ._capnp import decode

        return decode(schema, self._native.recv(timeout), reader_options)

    # -- settings, state, lifetime -------------------------------------------------

    @property
    def max_message_len(self) -> int:
        """The longest message this channel carries, in bytes."""
        return self._native.max_message_len

    @property
    def name(self) -> str:
        """The channel's name."""
        return self._name

    def stats(self) -> dict:
        """Counters of both directions: ``{"outgoing": {...}, "incoming": {...}}``, each
        with ``messages_sent``, ``bytes_sent``, ``messages_received``,
        ``bytes_received``, ``used_slots``, ``slot_size``, ``slot_count`` and
        ``producer_closed``."""
        return self.control.stats()

    @property
    def peer_state(self) -> str:
        """``"not_attached"``, ``"alive"``, ``"closed"`` or ``"dead"``."""
        return self.control.peer_state

    def receive_thread_running(self) -> bool:
        """Whether the ``on_receive`` thread runs."""
        return self._native.receive_thread_running()

    def take_receive_error(self) -> Optional[BaseException]:
        """The error that stopped the ``on_receive`` thread (once), or ``None``."""
        return self._native.take_receive_error()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def close(self) -> None:
        """Closes this side (idempotent): the peer sees it closed, an ``on_receive``
        thread is stopped and joined. A ``recv_view`` still alive keeps the receiving
        half until it is released."""
        self._native.close()
        _open_channels.discard(self)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<capnp_shm_transport.Channel {self._name!r} closed>"
        return f"<capnp_shm_transport.Channel {self._name!r} side {self.control.side} peer {self.peer_state}>"
