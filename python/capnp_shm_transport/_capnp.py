"""pycapnp glue: decoding a received message with a schema's reader."""

from __future__ import annotations

from typing import Any, Dict

from ._errors import Decode


def decode(schema: Any, data: bytes, reader_options: Dict[str, Any]) -> Any:
    """``schema.from_bytes(data)`` with pycapnp's errors raised as :class:`Decode`.

    pycapnp reads a ``bytes`` object in place (it keeps a reference), so the reader costs
    no copy beyond the one out of the slot."""
    try:
        reader = schema.from_bytes(data, **reader_options)
        # pycapnp >= 2 returns a context manager whose reader is also usable directly;
        # entering it is what older releases required.
        if hasattr(reader, "__enter__") and not hasattr(reader, "which"):
            reader = reader.__enter__()
        return reader
    except Exception as e:  # pycapnp raises KjException / ValueError
        raise Decode(f"malformed Cap'n Proto message: {e}") from e
