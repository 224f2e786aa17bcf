"""The index: derived data that makes the archive fast to query.

Terms:

- **catalog** (LMDB): SOP Instance UID -> where each version lives, its
  checksum and frame count; plus open write intents and the ordered change
  log. A version is visible once the catalog has committed it.
- **metadata index** (DuckDB): typed tables of patients, studies, series and
  instances, with each instance's DICOM JSON, for search and SQL.

Both can be rebuilt from the manifests in the tiers (``rebuild``); nothing
in ``tiers`` depends on them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from dicomvault.archive.index.catalog import Catalog, InstanceRecord, VersionRecord
from dicomvault.archive.index.metadata import MetadataIndex
from dicomvault.archive.manifest import Manifest

__all__ = ["Catalog", "Index", "InstanceRecord", "MetadataIndex", "VersionRecord"]


@dataclass(slots=True)
class Index:
    """The catalog and the metadata index of one archive."""

    catalog: Catalog
    metadata: MetadataIndex
    _order: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, folder: Path) -> Index:
        """Open (creating when missing) the index files under ``folder``."""
        return cls(
            Catalog(folder / "catalog.lmdb"), MetadataIndex(folder / "metadata.duckdb")
        )

    def commit(self, manifest: Manifest, version: VersionRecord, op_id: str) -> int:
        """Make a stored version visible in the catalog; queue its metadata.

        The catalog commit is the point of no return (durable, logged as a
        change). Changes are queued for the metadata index in sequence order,
        so its "applied up to" mark never skips a change a crash could lose.
        Call ``metadata.flush(seq)`` to wait until search and SQL see it.

        Returns
        -------
        int
            The change's sequence number.
        """
        with self._order:
            seq: int = self.catalog.commit_version(
                manifest.sop_instance_uid,
                manifest.study_uid,
                manifest.series_uid,
                version,
                op_id,
            )
            self.metadata.enqueue(manifest, version.tier, seq)
        return seq

    def close(self) -> None:
        self.metadata.close()
        self.catalog.close()
