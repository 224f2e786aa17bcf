"""The contract every tier backend fulfils.

A tier is a flat namespace of immutable objects under one root URL. Keys are
relative POSIX paths such as ``studies/1.2.3/1.2.4/1.2.5/v1a2b/envelope.bin``.
Backends live one per module (``local``, ``s3``); nothing here knows DICOM.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NewType, Protocol, runtime_checkable

from dicomvault.tiers.errors import InvalidKeyError

if TYPE_CHECKING:
    from zarr.abc.store import Store

ObjectKey = NewType("ObjectKey", str)

# A key component may hold letters, digits, dot, dash and underscore; it may
# not be "." or "..". This keeps every key inside the tier's root whatever a
# UID in an uploaded file says.
_SAFE_PART = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def make_key(*parts: str) -> ObjectKey:
    """Join parts into a key, refusing anything that could leave the root.

    Raises
    ------
    InvalidKeyError
        If a part is empty, ``.`` or ``..``, or holds a character outside
        ``[A-Za-z0-9._-]``.
    """
    for part in parts:
        for piece in part.split("/"):
            if piece in (".", "..") or not _SAFE_PART.match(piece):
                raise InvalidKeyError(
                    f"unsafe object key component {piece!r} in {'/'.join(parts)!r}; "
                    "components may only hold letters, digits, '.', '-' and '_'"
                )
    return ObjectKey(posixpath.join(*parts))


def check_key(key: str) -> ObjectKey:
    """Validate an existing key string; see :func:`make_key`."""
    return make_key(*key.split("/"))


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a tier reports of one stored object."""

    key: ObjectKey
    size: int
    sha256: str


@runtime_checkable
class Tier(Protocol):
    """A place where immutable objects live.

    Methods are safe to call from several threads at once.
    """

    name: str
    url: str

    def put_file(
        self, key: ObjectKey, source: Path, *, sha256: str, move: bool = False
    ) -> ObjectInfo:
        """Store a local file as a new object; durable when it returns.

        The bytes are read back and hashed before returning; ``sha256`` is
        what the caller expects. With ``move`` the source may be consumed
        (renamed into place) instead of copied.

        Raises
        ------
        ObjectExistsError
            The key already holds an object; nothing is changed.
        TierIntegrityError
            The stored bytes do not hash to ``sha256``; the object is removed.
        TierUnavailableError
            Transient; the call may be retried.
        """
        ...

    def put_bytes(self, key: ObjectKey, data: bytes, *, sha256: str) -> ObjectInfo:
        """Store bytes as a new object; same contract as :meth:`put_file`."""
        ...

    def open_read(self, key: ObjectKey) -> BinaryIO:
        """Open an object for sequential reading.

        Raises
        ------
        ObjectNotFoundError
            The object is absent (never raised for an unreadable object).
        """
        ...

    def read_bytes(self, key: ObjectKey) -> bytes:
        """Read a whole object; raises ObjectNotFoundError when absent."""
        ...

    def read_range(self, key: ObjectKey, start: int, length: int) -> bytes:
        """Read ``length`` bytes at ``start``; short only at the object's end."""
        ...

    def size(self, key: ObjectKey) -> int:
        """Size in bytes; raises ObjectNotFoundError when absent."""
        ...

    def exists(self, key: ObjectKey) -> bool:
        """Whether the key holds an object."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectKey]:
        """Yield every key under ``prefix`` (recursively), in no set order."""
        ...

    def delete(self, key: ObjectKey) -> None:
        """Remove an object. Idempotent: an absent key is not an error."""
        ...

    def zarr_store(self, prefix: ObjectKey) -> Store:
        """A read-only zarr store rooted at ``prefix``."""
        ...


def read_all(stream: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Yield a stream's content in chunks."""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        yield chunk
