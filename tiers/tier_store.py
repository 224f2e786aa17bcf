"""A read-only zarr store over any tier's ``read_range``.

Used by tiers whose objects zarr cannot read directly (an encrypted tier
decrypts in ``read_range``). Every read goes through the tier, so the tier's
errors and checks apply; only an absent object reads as missing (zarr's fill
value), never a corrupt or undecryptable one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from dicomvault.tiers.base import ObjectKey
from dicomvault.tiers.errors import ObjectNotFoundError

if TYPE_CHECKING:
    from dicomvault.tiers.base import Tier


class TierStore(Store):
    """Zarr keys ``prefix/<zarr key>`` read through ``tier``; read-only."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True
    supports_partial_writes = False

    def __init__(self, tier: Tier, prefix: str) -> None:
        super().__init__(read_only=True)
        self.tier = tier
        self.prefix = prefix.rstrip("/")

    def __repr__(self) -> str:
        return f"TierStore(tier={self.tier.name!r}, prefix={self.prefix!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, TierStore)
            and other.tier is self.tier
            and other.prefix == self.prefix
        )

    def _key(self, key: str) -> ObjectKey:
        return ObjectKey(f"{self.prefix}/{key}" if key else self.prefix)

    def _read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        full = self._key(key)
        try:
            if byte_range is None:
                return self.tier.read_bytes(full)  # type: ignore[no-any-return]
            if isinstance(byte_range, RangeByteRequest):
                length = byte_range.end - byte_range.start
                return self.tier.read_range(full, byte_range.start, length)  # type: ignore[no-any-return]
            size = self.tier.size(full)
            if isinstance(byte_range, OffsetByteRequest):
                start = byte_range.offset
            elif isinstance(byte_range, SuffixByteRequest):
                start = max(0, size - byte_range.suffix)
            else:
                raise TypeError(f"unexpected byte range {byte_range!r}")
            return self.tier.read_range(full, start, size - start)  # type: ignore[no-any-return]
        except ObjectNotFoundError:
            return None

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        # docstring inherited
        prototype = prototype or default_buffer_prototype()
        data = await asyncio.to_thread(self._read, key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        # docstring inherited
        return [await self.get(k, prototype, r) for k, r in key_ranges]

    async def exists(self, key: str) -> bool:
        # docstring inherited
        return await asyncio.to_thread(self.tier.exists, self._key(key))

    async def set(self, key: str, value: Buffer) -> None:
        # docstring inherited
        raise PermissionError(f"{self!r} is read-only; cannot write {key!r}")

    async def delete(self, key: str) -> None:
        # docstring inherited
        raise PermissionError(f"{self!r} is read-only; cannot delete {key!r}")

    async def list(self) -> AsyncIterator[str]:
        # docstring inherited
        async for key in self.list_prefix(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        keys = await asyncio.to_thread(lambda: list(self.tier.list(self.prefix)))
        base = self.prefix + "/"
        for key in keys:
            rel = key[len(base) :]
            if key.startswith(base) and rel.startswith(prefix):
                yield rel

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        prefix = prefix.rstrip("/")
        seen: set[str] = set()
        async for rel in self.list_prefix(f"{prefix}/" if prefix else ""):
            child = rel[len(prefix) + 1 :] if prefix else rel
            name = child.split("/", 1)[0]
            if name not in seen:
                seen.add(name)
                yield name
