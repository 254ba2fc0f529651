"""``Channel.recv_view``: a read-only memoryview over a message in its slot, with no copy.

The stable ABI of CPython 3.9 cannot export the buffer protocol from an extension type,
so the exporter is a ctypes array placed over the slot. Every memoryview made from it
(the one the block gives, and any slice or ``memoryview(mv)`` derived from it) keeps the
array alive; the slot is held (not released to the peer, so never rewritten, and the
mapping stays) until the array is garbage: a ``weakref.finalize`` on it releases the
lease. So a buffer that outlives the block can never read freed or reused memory; it
keeps the message held instead, and the next receive raises :class:`ViewInUse` until it
is released. The memoryview the block gave is released when the block ends: any use of
it afterwards raises ``ValueError: operation forbidden on released memoryview object``;
only while another object holds a buffer export of that very view (``numpy.frombuffer``,
``struct.iter_unpack``) does it stay readable, its slot held, until that object lets go.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any, Optional


class RecvView:
    """Context manager returned by ``Channel.recv_view``; ``with`` gives the memoryview."""

    __slots__ = ("_native", "_timeout", "_view")

    def __init__(self, native: Any, timeout: Optional[float]) -> None:
        self._native = native
        self._timeout = timeout
        self._view: Optional[memoryview] = None

    def __enter__(self) -> memoryview:
        if self._view is not None:
            raise RuntimeError("this recv_view block is already open")
        address, length, lease = self._native._view_begin(self._timeout)
        # ctypes refuses a zero-length array type; an empty message needs no memory.
        array = (ctypes.c_char * max(length, 1)).from_address(address)
        weakref.finalize(array, lease.release)
        view = memoryview(array).cast("B")[:length].toreadonly()
        self._view = view
        return view

    def __exit__(self, *exc: object) -> None:
        view, self._view = self._view, None
        if view is None:
            return
        try:
            # Views derived from it keep the array (and the slot) until they go; this one
            # is unusable from here on.
            view.release()
        except BufferError:
            # Something still holds a buffer export of the view itself (numpy.frombuffer,
            # struct.iter_unpack, ...): it cannot be released yet. It stays readable, and
            # the slot held, until that consumer lets go; safe either way.
            pass
