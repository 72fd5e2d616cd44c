"""A minimal PNG encoder: 8-bit RGB vertical gradients, cheap to build and to compress."""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Final

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_RGB: Final = 2
_FILTER_SUB: Final = 1


@functools.lru_cache(maxsize=32)
def gradient_png(width: int, height: int) -> bytes:
    """A valid PNG of exactly width x height pixels, shading from blue at the top to orange.

    Cached per size: every image of a size is identical, and a 4K image costs a few tenths of a
    second to build.
    """
    if width < 1 or height < 1:
        raise ValueError(f"PNG size must be positive, got {width}x{height}")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE_RGB, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", _pixels(width, height))
        + _chunk(b"IEND", b"")
    )


def padded_png(png: bytes, pad_bytes: int) -> bytes:
    """The same image with `pad_bytes` of zeros in a private ancillary chunk before IEND.

    Decoders skip unknown ancillary chunks, so it stays a valid PNG of the same size.
    """
    if pad_bytes <= 0:
        return png
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + _chunk(b"imQp", bytes(pad_bytes)) + png[iend:]


def _pixels(width: int, height: int) -> bytes:
    # With the Sub filter a one-colour row is its first pixel followed by zero bytes, so each row
    # costs almost nothing to compress; the colour changes row by row to make a gradient.
    zeros = bytes(3 * (width - 1))
    compressor = zlib.compressobj(6)
    parts = []
    for y in range(height):
        shade = y * 255 // max(height - 1, 1)
        parts.append(compressor.compress(bytes((_FILTER_SUB, shade, 96, 255 - shade)) + zeros))
    parts.append(compressor.flush())
    return b"".join(parts)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
