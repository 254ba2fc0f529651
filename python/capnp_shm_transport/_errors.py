"""The exception hierarchy: one class per variant of the Rust library's ``Error``.

Every exception raised by the transport is a :class:`Error`; the text is the Rust
message. Classes that match a built-in category also derive from it (``Timeout`` is a
``TimeoutError``, ``MessageTooLarge`` and ``InvalidArgument`` are ``ValueError``\\ s, ...),
so generic handlers keep working.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every error of this package."""


class Timeout(Error, TimeoutError):
    """The call's deadline passed (``full``: a send found the ring full; else a receive
    found it empty)."""

    full: bool = False


class Closed(Error):
    """The peer closed the channel: nothing more will arrive from it."""


class PeerDead(Error):
    """The peer's process died without closing (messages it sent first are delivered)."""


class Reconnecting(Error):
    """The peer is gone and side B is re-attaching to a restarted side A."""


class GaveUp(Error):
    """The peer is gone and the reconnection policy gave up."""


class MessageTooLarge(Error, ValueError):
    """A message is longer than ``max_len`` (``Channel.max_message_len``); nothing was
    sent."""

    len: int = 0
    max_len: int = 0


class InvalidArgument(Error, ValueError):
    """An argument is out of range (``what`` names it)."""

    what: str = ""


class NotFound(Error):
    """Side B waited its whole open timeout and side A never created the channel."""

    name: str = ""


class SideInUse(Error):
    """This side of the channel is held by a live process (``side``, ``pid``)."""

    name: str = ""
    side: str = ""
    pid: int = 0


class Foreign(Error):
    """A segment is not ours (another owner, or a mode other than 0600)."""

    name: str = ""


class ReceiverInUse(Error):
    """This side receives through its ``on_receive`` thread: direct receives are refused."""


class Corrupt(Error):
    """Shared memory holds a value that breaks the layout contract. ``field`` names the
    header field or slot word, ``kind`` the Rust ``Corruption`` variant."""

    kind: str = ""
    field: str = ""


class Decode(Error):
    """A slot does not hold a well-formed Cap'n Proto message."""


class Encode(Error):
    """A Cap'n Proto message could not be written into a slot."""


class OsError(Error, OSError):
    """An operating-system call failed (``op``, ``name``, ``errno``)."""

    op: str = ""
    name: str = ""


class ChannelClosed(Error):
    """This handle was closed (``Channel.close``); it can no longer send or receive."""


class ViewInUse(Error, BufferError):
    """A ``recv_view`` message (or a memoryview derived from it) is still alive, so the
    next receive cannot start: release the derived views first."""


class BufferTooSmall(Error, ValueError):
    """``recv_into``'s buffer is shorter than the message (``needed`` bytes); the message
    stays for the next receive."""

    needed: int = 0


__all__ = [
    "Error",
    "Timeout",
    "Closed",
    "PeerDead",
    "Reconnecting",
    "GaveUp",
    "MessageTooLarge",
    "InvalidArgument",
    "NotFound",
    "SideInUse",
    "Foreign",
    "ReceiverInUse",
    "Corrupt",
    "Decode",
    "Encode",
    "OsError",
    "ChannelClosed",
    "ViewInUse",
    "BufferTooSmall",
]
