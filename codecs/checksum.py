"""SHA-256 checksums, the one digest the archive records for every object."""

from __future__ import annotations

import hashlib


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """SHA-256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


class Sha256Stream:
    """Running SHA-256 over bytes fed in order, with a byte count."""

    __slots__ = ("_digest", "size")

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes."""
        self._digest.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        """The digest of everything fed so far."""
        return self._digest.hexdigest()
