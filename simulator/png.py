"""PNG chunk surgery: the same image made larger, for the `sim:filepad` marker."""

from __future__ import annotations

import struct
import zlib


def padded_png(png: bytes, pad_bytes: int) -> bytes:
    """The same image with `pad_bytes` of zeros in a private ancillary chunk before IEND.

    Decoders skip unknown ancillary chunks, so it stays a valid PNG of the same size.
    """
    if pad_bytes <= 0:
        return png
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + _chunk(b"imQp", bytes(pad_bytes)) + png[iend:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
