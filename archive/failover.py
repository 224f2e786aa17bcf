"""Failover reads: a primary tier that does not answer is read from a replica.

Beta, behind ``replication.failover_reads``. :class:`FailoverTier` wraps one
primary tier and the same-named tiers of the replica regions. Reads go to the
primary; when it raises :class:`TierUnavailableError` (it did not answer,
after its own retries) the read is served by the first region that answers,
and one WARNING line names the tier, the key and the region. Writes and
deletes always go to the primary: a replica is never written by a read path.

Only "did not answer" fails over. An absent object stays absent and a corrupt
one stays an integrity error, because those are answers, and hiding them
would hide data loss on the primary (``verify --repair`` fixes those).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from dicomvault.archive import logkeys as lk
from dicomvault.tiers import ObjectInfo, ObjectKey, Tier, TierUnavailableError

if TYPE_CHECKING:
    from zarr.abc.store import Store

logger = logging.getLogger(__name__)

T = TypeVar("T")


class FailoverTier:
    """A tier that reads from replicas when its primary does not answer.

    Parameters
    ----------
    primary
        The tier all writes go to and reads try first.
    replicas
        The same-named tier of each region, by region name, in order of
        preference.
    """

    def __init__(self, primary: Tier, replicas: dict[str, Tier]):
        self.primary = primary
        self.replicas = replicas
        self.name = primary.name
        self.url = primary.url

    def _read(self, key: str, call: Callable[[Tier], T]) -> T:
        try:
            return call(self.primary)
        except TierUnavailableError as first:
            for region, tier in self.replicas.items():
                try:
                    result = call(tier)
                except TierUnavailableError:
                    continue
                lk.log_event(
                    logger,
                    lk.READ_FAILOVER,
                    logging.WARNING,
                    **{
                        lk.TIER: self.name,
                        lk.KEY: key,
                        lk.REGION: region,
                        lk.ERROR: type(first).__name__,
                    },
                )
                return result
            raise

    def put_file(
        self, key: ObjectKey, source: Path, *, sha256: str, move: bool = False
    ) -> ObjectInfo:
        return self.primary.put_file(key, source, sha256=sha256, move=move)

    def put_bytes(self, key: ObjectKey, data: bytes, *, sha256: str) -> ObjectInfo:
        return self.primary.put_bytes(key, data, sha256=sha256)

    def open_read(self, key: ObjectKey) -> BinaryIO:
        return self._read(key, lambda t: t.open_read(key))  # type: ignore[no-any-return]

    def read_bytes(self, key: ObjectKey) -> bytes:
        return self._read(key, lambda t: t.read_bytes(key))  # type: ignore[no-any-return]

    def read_range(self, key: ObjectKey, start: int, length: int) -> bytes:
        return self._read(key, lambda t: t.read_range(key, start, length))  # type: ignore[no-any-return]

    def size(self, key: ObjectKey) -> int:
        return self._read(key, lambda t: t.size(key))  # type: ignore[no-any-return]

    def exists(self, key: ObjectKey) -> bool:
        return self._read(key, lambda t: t.exists(key))  # type: ignore[no-any-return]

    def list(self, prefix: str = "") -> Iterator[ObjectKey]:
        return self.primary.list(prefix)  # type: ignore[no-any-return]

    def delete(self, key: ObjectKey) -> None:
        self.primary.delete(key)

    def zarr_store(self, prefix: ObjectKey) -> Store:
        # Limitation: frame reads through zarr use the primary only; a
        # zarr store that fails over per chunk would lift this.
        return self.primary.zarr_store(prefix)  # type: ignore[no-any-return]
