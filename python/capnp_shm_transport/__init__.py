"""capnp_shm_transport: a duplex single-producer/single-consumer channel between two
processes over POSIX shared memory, with Cap'n Proto messages through pycapnp.

Side A creates a channel, side B opens it::

    import capnp_shm_transport as cst

    with cst.Channel.create("orders", slot_size=512) as a:   # process A
        a.send(b"ping")
    with cst.Channel.open("orders", timeout=5) as b:         # process B
        print(b.recv(timeout=1))

See README.md, section "Python", for the whole API.
"""

from __future__ import annotations

from typing import Any, Dict, List

from . import _native
from ._channel import Channel, ReconnectPolicy
from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._native import Control
from ._view import RecvView

#: Default slot size (bytes) and slot count of ``Channel.create``.
DEFAULT_SLOT_SIZE: int = _native.DEFAULT_SLOT_SIZE
DEFAULT_SLOT_COUNT: int = _native.DEFAULT_SLOT_COUNT


def list_channels() -> List[str]:
    """Names of the channels that have both segments under ``/dev/shm``, sorted."""
    return _native.list_channels()


def inspect(name: str) -> Dict[str, Any]:
    """Channel ``name``'s headers (geometry, both rings' counters, poll intervals, wait
    modes, closed flags, attachment and staleness), read without attaching."""
    return _native.inspect(name)


def remove(name: str) -> bool:
    """Removes channel ``name``'s segments; ``True`` if any existed."""
    return _native.remove(name)


def remove_stale() -> List[str]:
    """Removes every channel whose creator process is gone; returns their names."""
    return _native.remove_stale()


def is_stale(name: str) -> bool:
    """Whether channel ``name``'s creator is gone."""
    return _native.is_stale(name)


__all__ = [
    "Channel",
    "Control",
    "ReconnectPolicy",
    "RecvView",
    "DEFAULT_SLOT_SIZE",
    "DEFAULT_SLOT_COUNT",
    "list_channels",
    "inspect",
    "remove",
    "remove_stale",
    "is_stale",
    *_error_names,
]
