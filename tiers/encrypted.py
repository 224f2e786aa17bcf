"""Encryption at rest: a tier wrapper that seals every object.

Terms:

- **data key**: a random AES-256 key made for one object when it is written.
- **master key**: held by a :class:`~dicomvault.tiers.master_keys.KeyProvider`;
  it wraps data keys and never touches object bytes.
- **key record**: the small object ``.dvkeys/<object key>/<master key id>.dek``
  holding one object's wrapped data key. It lives beside, never inside, the
  sealed object, so rotating the master key rewrites key records only.

Sealed object layout (all integers big-endian)::

    header  (40 bytes)  b"DVSEALv1" | block_size u32 | plaintext_size u64
                        | object_id (16 random bytes) | reserved u32 = 0
    block 0..n-1        AES-256-GCM ciphertext of block_size plaintext bytes
                        (the last block may be shorter, or empty for an empty
                        object) followed by its 16-byte tag

Block ``i`` uses nonce ``i`` (96 bits) under the object's own data key, which
is never reused for another object, and authenticates the header, ``i`` and
whether it is the last block; so a block cannot be moved, dropped or cut off
without detection. A ranged read decrypts only the blocks it touches: a frame
of ``n`` bytes costs at most ``n + 2 * block_size`` bytes read.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomvault.tiers.base import ObjectInfo, ObjectKey, Tier, check_key, make_key
from dicomvault.tiers.errors import (
    EncryptionKeyError,
    ObjectExistsError,
    ObjectNotFoundError,
    TierIntegrityError,
)
from dicomvault.tiers.master_keys import KeyProvider

if TYPE_CHECKING:
    from zarr.abc.store import Store

logger = logging.getLogger(__name__)

MAGIC = b"DVSEALv1"
KEY_MAGIC = b"DVKEYv1\n"
KEYS_ROOT = ".dvkeys"
KEY_SUFFIX = ".dek"
DEFAULT_BLOCK_SIZE = 64 << 10
TAG_BYTES = 16
_HEADER = struct.Struct(">8sIQ16sI")
HEADER_BYTES = _HEADER.size
_CACHE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class _Sealed:
    """What a reader needs of one sealed object: its header and data key."""

    header: bytes
    block_size: int
    size: int
    object_id: bytes
    aead: AESGCM

    @property
    def blocks(self) -> int:
        return max(1, -(-self.size // self.block_size))

    def raw_offset(self, index: int) -> int:
        return HEADER_BYTES + index * (self.block_size + TAG_BYTES)

    def plain_length(self, index: int) -> int:
        return min(self.block_size, self.size - index * self.block_size)

    @property
    def raw_size(self) -> int:
        return HEADER_BYTES + self.size + self.blocks * TAG_BYTES


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">QB", index, int(last))


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def key_record_prefix(key: ObjectKey) -> str:
    """The folder that holds ``key``'s key records (one per master key)."""
    return f"{KEYS_ROOT}/{key}/"


def _context(key: str, object_id: bytes) -> bytes:
    return b"dicomvault data key\0" + key.encode() + b"\0" + object_id


class EncryptedTier:
    """Seals objects with AES-256-GCM before they reach ``inner``.

    Parameters
    ----------
    inner
        The tier that stores the sealed bytes and key records.
    keys
        The master key provider; its ``key_id`` picks the key records read.
    block_size
        Plaintext bytes per sealed block; larger blocks cost less space,
        smaller blocks make small ranged reads cheaper.

    Sizes and checksums reported (``ObjectInfo``, :meth:`size`) are those of
    the plaintext; the tier's callers never see sealed bytes.
    """

    def __init__(
        self,
        inner: Tier,
        keys: KeyProvider,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        self.inner = inner
        self.keys = keys
        self.name = inner.name
        self.url = inner.url
        self.block_size = block_size
        self._cache: OrderedDict[str, _Sealed] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EncryptedTier({self.inner!r}, key_id={self.keys.key_id!r})"

    # -- writing --

    def put_file(
        self, key: ObjectKey, source: Path, *, sha256: str, move: bool = False
    ) -> ObjectInfo:
        """Seal and store a local file; see :meth:`Tier.put_file`.

        The source is read, never consumed, whatever ``move`` says.
        """
        with open(source, "rb") as fh:
            return self._put(key, fh, sha256)

    def put_bytes(self, key: ObjectKey, data: bytes, *, sha256: str) -> ObjectInfo:
        """Seal and store bytes; see :meth:`Tier.put_file`."""
        return self._put(key, io.BytesIO(data), sha256)

    def _put(self, key: ObjectKey, source: BinaryIO, sha256: str) -> ObjectInfo:
        check_key(key)
        if self.inner.exists(key):
            raise ObjectExistsError(
                f"object {key!r} already exists; refusing to overwrite"
            )

        with tempfile.TemporaryDirectory(prefix="dicomvault-seal-") as tmp:
            sealed_path = Path(tmp) / "sealed"
            data_key = AESGCM.generate_key(bit_length=256)
            object_id = os.urandom(16)
            size, plain_sha, sealed_sha = self._seal(
                source, sealed_path, data_key, object_id
            )
            if plain_sha != sha256:
                raise TierIntegrityError(
                    f"object {key!r} in tier {self.name!r} read back with sha256 "
                    f"{plain_sha}, expected {sha256}; the write was undone"
                )

            # The key record goes first: a crash between the two writes leaves
            # an unused record (extra data), never a sealed object without
            # its key (lost data).
            record = self._write_key_record(key, object_id, data_key)
            try:
                self.inner.put_file(key, sealed_path, sha256=sealed_sha, move=True)
            except BaseException:
                self.inner.delete(record)
                raise
        self._forget(key)
        return ObjectInfo(key=key, size=size, sha256=sha256)

    def _seal(
        self, source: BinaryIO, target: Path, data_key: bytes, object_id: bytes
    ) -> tuple[int, str, str]:
        """Write the sealed form of ``source``; return size and both hashes."""
        aead = AESGCM(data_key)
        plain_hash, sealed_hash = hashlib.sha256(), hashlib.sha256()
        size = 0
        with open(target, "wb") as out:
            # The plaintext size goes in the header, which every block
            # authenticates, so the source is spooled once to learn it.
            spooled = tempfile.TemporaryFile(dir=target.parent)
            with spooled:
                while chunk := source.read(1 << 20):
                    spooled.write(chunk)
                    plain_hash.update(chunk)
                    size += len(chunk)
                spooled.seek(0)
                header = _HEADER.pack(MAGIC, self.block_size, size, object_id, 0)
                out.write(header)
                sealed_hash.update(header)
                blocks = max(1, -(-size // self.block_size))
                for index in range(blocks):
                    plain = spooled.read(self.block_size)
                    last = index == blocks - 1
                    sealed = aead.encrypt(
                        _nonce(index), plain, _aad(header, index, last)
                    )
                    out.write(sealed)
                    sealed_hash.update(sealed)
        return size, plain_hash.hexdigest(), sealed_hash.hexdigest()

    def _write_key_record(
        self, key: ObjectKey, object_id: bytes, data_key: bytes
    ) -> ObjectKey:
        record = make_key(key_record_prefix(key) + self.keys.key_id + KEY_SUFFIX)
        body = (
            KEY_MAGIC + object_id + self.keys.wrap(data_key, _context(key, object_id))
        )
        digest = hashlib.sha256(body).hexdigest()
        try:
            self.inner.put_bytes(record, body, sha256=digest)
        except ObjectExistsError:
            # Left by a write that crashed before its object landed (the
            # object was checked absent above): replace it.
            self.inner.delete(record)
            self.inner.put_bytes(record, body, sha256=digest)
        return record

    # -- reading --

    def _forget(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def _open(self, key: ObjectKey) -> _Sealed:
        """The header and data key of ``key``, from the cache or the tier."""
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found

        header = self.inner.read_range(key, 0, HEADER_BYTES)
        if len(header) < HEADER_BYTES or header[:8] != MAGIC:
            raise TierIntegrityError(
                f"object {key!r} in tier {self.name!r} is not a sealed object "
                f"(expected a {MAGIC.decode()} header, found {header[:8]!r}); it "
                "was written without encryption or is corrupt"
            )
        _magic, block_size, size, object_id, _reserved = _HEADER.unpack(header)
        if block_size <= 0:
            raise TierIntegrityError(
                f"object {key!r} in tier {self.name!r} has a corrupt header "
                f"(block size {block_size})"
            )
        data_key = self._data_key(key, object_id)
        sealed = _Sealed(header, block_size, size, object_id, AESGCM(data_key))

        with self._lock:
            self._cache[key] = sealed
            if len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return sealed

    def _data_key(self, key: ObjectKey, object_id: bytes) -> bytes:
        record = make_key(key_record_prefix(key) + self.keys.key_id + KEY_SUFFIX)
        try:
            body = self.inner.read_bytes(record)
        except ObjectNotFoundError:
            others = sorted(self._key_ids(key))
            if others:
                raise EncryptionKeyError(
                    f"object {key!r} in tier {self.name!r} is sealed under master "
                    f"key {', '.join(others)}, but the configured master key is "
                    f"{self.keys.key_id}; configure the matching key, or rotate "
                    "the records to this key with the old key at hand"
                ) from None
            raise EncryptionKeyError(
                f"object {key!r} in tier {self.name!r} has no key record under "
                f"{key_record_prefix(key)!r}; it cannot be decrypted; restore "
                "the key record or the object from a replica"
            ) from None
        if body[:8] != KEY_MAGIC or body[8:24] != object_id:
            raise EncryptionKeyError(
                f"key record {record!r} in tier {self.name!r} does not belong to "
                f"the object stored at {key!r} (object id differs); restore the "
                "key record or the object from a replica"
            )
        try:
            return self.keys.unwrap(body[24:], _context(key, object_id))  # type: ignore[no-any-return]
        except EncryptionKeyError as err:
            raise EncryptionKeyError(
                f"object {key!r} in tier {self.name!r}: {err}"
            ) from None

    def _key_ids(self, key: ObjectKey) -> Iterator[str]:
        prefix = key_record_prefix(key)
        for record in self.inner.list(prefix):
            name = record[len(prefix) :]
            if "/" not in name and name.endswith(KEY_SUFFIX):
                yield name[: -len(KEY_SUFFIX)]

    def _decrypt(self, key: str, sealed: _Sealed, index: int, raw: bytes) -> bytes:
        last = index == sealed.blocks - 1
        try:
            plain = sealed.aead.decrypt(
                _nonce(index), raw, _aad(sealed.header, index, last)
            )
        except InvalidTag:
            self._forget(key)
            raise TierIntegrityError(
                f"object {key!r} in tier {self.name!r}: sealed block {index} failed "
                "authentication (AES-GCM tag mismatch); the object is corrupt or "
                "was altered; restore it from a replica"
            ) from None
        if len(plain) != sealed.plain_length(index):
            raise TierIntegrityError(
                f"object {key!r} in tier {self.name!r}: block {index} holds "
                f"{len(plain)} bytes, expected {sealed.plain_length(index)}"
            )
        return plain

    def _read_blocks(
        self, key: ObjectKey, sealed: _Sealed, first: int, last: int
    ) -> bytes:
        start = sealed.raw_offset(first)
        end = sealed.raw_offset(last) + sealed.plain_length(last) + TAG_BYTES
        raw = self.inner.read_range(key, start, end - start)
        if len(raw) != end - start:
            raise TierIntegrityError(
                f"object {key!r} in tier {self.name!r} is truncated: blocks "
                f"{first}-{last} need {end - start} bytes at offset {start}, "
                f"found {len(raw)}"
            )
        parts, offset = [], 0
        for index in range(first, last + 1):
            length = sealed.plain_length(index) + TAG_BYTES
            parts.append(
                self._decrypt(key, sealed, index, raw[offset : offset + length])
            )
            offset += length
        return b"".join(parts)

    def read_range(self, key: ObjectKey, start: int, length: int) -> bytes:
        """Read a plaintext range, decrypting only the blocks it touches."""
        sealed = self._open(key)
        end = min(sealed.size, start + max(0, length))
        if start >= end:
            return b""
        first, last = start // sealed.block_size, (end - 1) // sealed.block_size
        plain = self._read_blocks(key, sealed, first, last)
        offset = start - first * sealed.block_size
        return plain[offset : offset + end - start]

    def read_bytes(self, key: ObjectKey) -> bytes:
        """Read and decrypt a whole object; every block is authenticated."""
        sealed = self._open(key)
        found = self.inner.size(key)
        if found != sealed.raw_size:
            raise TierIntegrityError(
                f"object {key!r} in tier {self.name!r} holds {found} sealed bytes, "
                f"expected {sealed.raw_size} for {sealed.size} plaintext bytes"
            )
        return self._read_blocks(key, sealed, 0, sealed.blocks - 1)

    def open_read(self, key: ObjectKey) -> BinaryIO:
        """Open a decrypting stream; see :meth:`Tier.open_read`."""
        sealed = self._open(key)
        raw = _DecryptingReader(self, key, sealed)
        return io.BufferedReader(raw, buffer_size=sealed.block_size)

    def size(self, key: ObjectKey) -> int:
        """Plaintext size, from the (authenticated on read) header."""
        return self._open(key).size

    def exists(self, key: ObjectKey) -> bool:
        """Whether the key holds an object."""
        return self.inner.exists(key)  # type: ignore[no-any-return]

    def list(self, prefix: str = "") -> Iterator[ObjectKey]:
        """Yield object keys under ``prefix``; key records are not listed."""
        for key in self.inner.list(prefix):
            if not key.startswith(KEYS_ROOT + "/"):
                yield key

    def delete(self, key: ObjectKey) -> None:
        """Remove an object, then its key records; idempotent.

        The object goes first: a crash in between leaves an unused key record,
        never an object without its key.
        """
        self.inner.delete(key)
        self._forget(key)
        for key_id in list(self._key_ids(key)):
            self.inner.delete(make_key(key_record_prefix(key) + key_id + KEY_SUFFIX))

    def zarr_store(self, prefix: ObjectKey) -> Store:
        """A read-only zarr store that decrypts through :meth:`read_range`."""
        from dicomvault.tiers.tier_store import TierStore

        return TierStore(self, check_key(prefix))  # type: ignore[no-any-return]

    # -- master key rotation --

    def rewrap(self, new_keys: KeyProvider) -> int:
        """Re-wrap every data key under ``new_keys``; sealed objects are untouched.

        Changes stored data: each key record made with this tier's master key
        gets a sibling made with the new one, then the old record is deleted.
        A crash leaves both records (either key opens the object), never none.
        Returns the number of records re-wrapped. Records of other master keys
        are left alone.
        """
        count = 0
        old_name = self.keys.key_id + KEY_SUFFIX
        for record in list(self.inner.list(KEYS_ROOT + "/")):
            if not record.endswith("/" + old_name):
                continue
            key = ObjectKey(record[len(KEYS_ROOT) + 1 : -len(old_name) - 1])
            body = self.inner.read_bytes(record)
            object_id = body[8:24]
            context = _context(key, object_id)
            data_key = self.keys.unwrap(body[24:], context)
            new_body = KEY_MAGIC + object_id + new_keys.wrap(data_key, context)
            new_record = make_key(key_record_prefix(key) + new_keys.key_id + KEY_SUFFIX)
            digest = hashlib.sha256(new_body).hexdigest()
            try:
                self.inner.put_bytes(new_record, new_body, sha256=digest)
            except ObjectExistsError:
                # A previous rotation stopped after this write: keep that one.
                pass
            self.inner.delete(ObjectKey(record))
            count += 1
        logger.info(
            "event=tier.rekeyed tier=%s from_key=%s to_key=%s count=%d",
            self.name,
            self.keys.key_id,
            new_keys.key_id,
            count,
        )
        self.keys = new_keys
        with self._lock:
            self._cache.clear()
        return count


class _DecryptingReader(io.RawIOBase):
    """Sequential decrypting reader, one sealed block at a time."""

    def __init__(self, tier: EncryptedTier, key: ObjectKey, sealed: _Sealed) -> None:
        super().__init__()
        self._tier, self._key, self._sealed = tier, key, sealed
        self._index = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and self._index < self._sealed.blocks:
            self._pending = self._tier._read_blocks(
                self._key, self._sealed, self._index, self._index
            )
            self._index += 1
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
