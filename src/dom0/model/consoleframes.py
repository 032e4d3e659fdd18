"""The console relay's framed socket: how a client that shows its role itself (the
web console) learns whether it holds the keyboard, apart from what the guest prints.

Next to each domain's console socket (raw bytes both ways: ``xm console``) the relay
listens on ``<socket>`` + :data:`FRAMED_SUFFIX`.  A client there sends raw keystrokes
and receives frames: one byte of kind, four bytes of length (big-endian), the
payload.  :data:`OUTPUT` frames carry what the guest printed; :data:`ROLE` frames
carry ``writer`` or ``viewer``, sent at attach and whenever the role changes.  The
guest cannot forge a role: its output is always inside an OUTPUT frame."""

from __future__ import annotations

import asyncio
import struct

FRAMED_SUFFIX = ".framed"
OUTPUT = b"o"
ROLE = b"r"
WRITER, VIEWER = "writer", "viewer"

_HEADER = struct.Struct(">cI")
#: the largest frame a reader accepts (the relay sends at most 64 KiB at once)
MAX_FRAME = 1 << 20


def frame(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """The next (kind, payload), or None at the end of the stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    kind, size = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"console frame of {size} bytes")
    try:
        return kind, await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None
