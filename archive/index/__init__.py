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

from dataclasses import dataclass
from pathlib import Path

from dicomvault.archive.index.catalog import Catalog, InstanceRecord, VersionRecord
from dicomvault.archive.index.metadata import MetadataIndex

__all__ = ["Catalog", "Index", "InstanceRecord", "MetadataIndex", "VersionRecord"]


@dataclass(slots=True)
class Index:
    """The catalog and the metadata index of one archive."""

    catalog: Catalog
    metadata: MetadataIndex

    @classmethod
    def open(cls, folder: Path) -> Index:
        """Open (creating when missing) the index files under ``folder``."""
        return cls(Catalog(folder / "catalog.lmdb"), MetadataIndex(folder / "metadata.duckdb"))

    def close(self) -> None:
        self.metadata.close()
        self.catalog.close()
