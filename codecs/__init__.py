"""Bytes in, bytes out: frame codecs and checksums. No I/O.

Terms:

- **frame**: one image of an instance's pixel data. A *native* frame is raw
  pixel samples; a *compressed* frame is the bitstream of an encapsulated
  transfer syntax (JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE, deflate).
- **pixel description**: rows, columns, samples, bits and photometric
  interpretation: what it takes to turn frame bytes into an array.
- **checksum**: SHA-256, hex encoded, of an object or a frame.
"""

from __future__ import annotations

from dicomvault.codecs.checksum import Sha256Stream, sha256_hex
from dicomvault.codecs.frames import (
    FrameDescription,
    decode_frame,
    is_native_transfer_syntax,
    native_dtype,
)

__all__ = [
    "FrameDescription",
    "Sha256Stream",
    "decode_frame",
    "is_native_transfer_syntax",
    "native_dtype",
    "sha256_hex",
]
