"""A tier on a local (or mounted) file system: ``file:///path``.

Writes follow the safe sequence: write to a temporary name in the target
folder, fsync the file, link it to its final name (which refuses an existing
name atomically), fsync the folder, then read back and verify the checksum.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dicomvault.tiers.base import ObjectInfo, ObjectKey, check_key
from dicomvault.tiers.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    TierError,
    TierIntegrityError,
    TierUnavailableError,
)

if TYPE_CHECKING:
    from zarr.abc.store import Store

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
_COPY_CHUNK = 4 << 20

# errno values that say the disk or mount is (perhaps briefly) unusable rather
# than that this object is wrong: worth a retry or a fallback.
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ESTALE, errno.ETIMEDOUT}


def _translate(err: OSError, key: str) -> TierError:
    """Map an OSError to the tier error hierarchy (the one table)."""
    if isinstance(err, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        # A key that names a folder of other keys is not an object either.
        return ObjectNotFoundError(f"object {key!r} not found")
    if isinstance(err, FileExistsError):
        return ObjectExistsError(
            f"object {key!r} already exists; refusing to overwrite"
        )
    if err.errno in _TRANSIENT_ERRNOS:
        return TierUnavailableError(f"I/O error on {key!r}: {err}")
    return TierError(f"file system error on {key!r}: {err}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: Path) -> str:
    """SHA-256 (hex) of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalTier:
    """Objects as files under a root folder.

    Parameters
    ----------
    name
        The tier's name in the configuration (``hot``, ``warm``, ...).
    root
        The folder; created when missing.
    verify_writes
        Read every written object back and compare its SHA-256.
    """

    def __init__(self, name: str, root: Path | str, *, verify_writes: bool = True):
        self.name = name
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()
        self.verify_writes = verify_writes
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalTier(name={self.name!r}, root={str(self.root)!r})"

    def path_of(self, key: ObjectKey) -> Path:
        """The file that holds ``key``; the key is checked first."""
        return self.root / check_key(key)  # type: ignore[no-any-return]

    def put_file(
        self, key: ObjectKey, source: Path, *, sha256: str, move: bool = False
    ) -> ObjectInfo:
        """Store a local file; see :meth:`Tier.put_file`."""
        target = self.path_of(key)
        tmp = target.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(target))
            if move and os.stat(source).st_dev == os.stat(target.parent).st_dev:
                # A hard link instead of a copy: the source stays for the
                # caller to remove, so a failed verification loses nothing.
                os.link(source, tmp)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                with open(source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
                    dst.flush()
                    os.fsync(dst.fileno())
            return self._commit(key, tmp, target, sha256)
        except OSError as err:
            raise _translate(err, key) from err
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: ObjectKey, data: bytes, *, sha256: str) -> ObjectInfo:
        """Store bytes; see :meth:`Tier.put_file`."""
        target = self.path_of(key)
        tmp = target.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as dst:
                dst.write(data)
                dst.flush()
                os.fsync(dst.fileno())
            return self._commit(key, tmp, target, sha256)
        except OSError as err:
            raise _translate(err, key) from err
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(
        self, key: ObjectKey, tmp: Path, target: Path, sha256: str
    ) -> ObjectInfo:
        # link() fails when the target exists, so two writers of the same key
        # cannot overwrite each other; rename() would silently replace.
        os.link(tmp, target)
        _fsync_dir(target.parent)
        size = target.stat().st_size
        if self.verify_writes:
            found = hash_file(target)
            if found != sha256:
                target.unlink(missing_ok=True)
                raise TierIntegrityError(
                    f"object {key!r} in tier {self.name!r} read back with sha256 "
                    f"{found}, expected {sha256}; the write was undone"
                )
        return ObjectInfo(key=key, size=size, sha256=sha256)

    def open_read(self, key: ObjectKey) -> BinaryIO:
        """Open an object for reading; see :meth:`Tier.open_read`."""
        try:
            return open(self.path_of(key), "rb")
        except OSError as err:
            raise _translate(err, key) from err

    def read_bytes(self, key: ObjectKey) -> bytes:
        """Read a whole object; see :meth:`Tier.read_bytes`."""
        try:
            return self.path_of(key).read_bytes()
        except OSError as err:
            raise _translate(err, key) from err

    def read_range(self, key: ObjectKey, start: int, length: int) -> bytes:
        """Read a byte range; see :meth:`Tier.read_range`."""
        try:
            with open(self.path_of(key), "rb") as fh:
                fh.seek(start)
                return fh.read(length)
        except OSError as err:
            raise _translate(err, key) from err

    def size(self, key: ObjectKey) -> int:
        """Size of an object; see :meth:`Tier.size`."""
        try:
            return self.path_of(key).stat().st_size
        except OSError as err:
            raise _translate(err, key) from err

    def exists(self, key: ObjectKey) -> bool:
        """Whether the key holds an object."""
        return self.path_of(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectKey]:
        """Yield keys under ``prefix``, temporary files included.

        Temporary files (``.tmp-*``) are listed so that ``verify`` can find
        and remove leftovers of interrupted writes.
        """
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root)
            for name in files:
                yield ObjectKey((rel / name).as_posix())

    def delete(self, key: ObjectKey) -> None:
        """Remove an object and prune empty parent folders; idempotent."""
        path = self.path_of(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise _translate(err, key) from err
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def zarr_store(self, prefix: ObjectKey) -> Store:
        """A read-only zarr ``LocalStore`` at ``prefix``."""
        from zarr.storage import LocalStore

        return LocalStore(self.path_of(prefix), read_only=True)
