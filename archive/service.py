"""The archive service: the one API both front doors (gRPC, DICOMweb) call.

An :class:`Archive` owns the tiers, the index, the ingestor and the reader
of one data folder. Uploads arrive through :meth:`Archive.begin_upload`,
which spools them to disk while hashing, so no instance is ever held whole
in memory.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dicomvault.archive import export, maintenance, search, sql
from dicomvault.archive import logkeys as lk
from dicomvault.archive.config import Settings
from dicomvault.archive.errors import (
    DicomVaultError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    TruncatedUploadError,
)
from dicomvault.archive.index import Index, InstanceRecord, extended
from dicomvault.archive.ingest import Ingestor, StoreOutcome
from dicomvault.archive.retrieve import FrameOut, Reader
from dicomvault.archive.uids import check_uid
from dicomvault.codecs import Sha256Stream
from dicomvault.tiers import Tier, open_tier

logger = logging.getLogger(__name__)


class Upload:
    """One instance arriving in pieces, spooled to a local file."""

    def __init__(
        self, path: Path, declared_size: int, declared_sha256: str, max_bytes: int
    ):
        self.path = path
        self.declared_size = declared_size
        self.declared_sha256 = declared_sha256.lower()
        self.max_bytes = max_bytes
        self.hash = Sha256Stream()
        self._fh = open(path, "wb")

    def write(self, data: bytes) -> None:
        """Append bytes; refuses to grow past the size limits."""
        limit = self.declared_size or self.max_bytes
        if self.hash.size + len(data) > limit:
            if self.declared_size:
                raise InvalidInputError(
                    "upload is longer than its declared size "
                    f"of {self.declared_size} bytes"
                )
            raise LimitExceededError(
                "instance is larger than ingest.max_instance_bytes "
                f"({self.max_bytes} bytes)"
            )
        self._fh.write(data)
        self.hash.update(data)

    def finish(self) -> tuple[str, int]:
        """Close the spool file and check the declared size and checksum."""
        self._fh.close()
        size, digest = self.hash.size, self.hash.hexdigest()
        if self.declared_size and size != self.declared_size:
            raise TruncatedUploadError(
                f"truncated upload: {size} of {self.declared_size} "
                "declared bytes arrived"
            )
        if self.declared_sha256 and digest != self.declared_sha256:
            raise InvalidInputError(
                f"upload has sha256 {digest} "
                f"but the client declared {self.declared_sha256}"
            )
        return digest, size

    def discard(self) -> None:
        """Drop the spooled bytes."""
        if not self._fh.closed:
            self._fh.close()
        self.path.unlink(missing_ok=True)


class Archive:
    """One archive: tiers, index and the operations over them.

    Open with :meth:`open`; close with :meth:`close`.
    """

    def __init__(self, settings: Settings, tiers: dict[str, Tier], index: Index):
        self.settings = settings
        self.tiers = tiers
        self.index = index
        self.spool_dir = settings.data_dir / "spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.ingestor = Ingestor(
            tiers,
            index,
            self.spool_dir,
            default_tier=settings.get("storage.default_tier"),
            on_conflict=settings.get("ingest.on_conflict"),
            shard_bytes=settings.get("storage.shard_bytes"),
            zstd_levels={name: t.zstd_level for name, t in settings.tiers.items()},
        )
        self.reader = Reader(tiers, settings.get("ingest.chunk_bytes"))

    @classmethod
    def open(cls, settings: Settings) -> Archive:
        """Open the archive of ``settings.data_dir`` and recover from a crash."""
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        tiers = {
            name: open_tier(name, conf.url, dict(conf.storage_options))
            for name, conf in settings.tiers.items()
        }
        clean_spool(data_dir / "spool")
        index = Index.open(data_dir / "index")
        archive = cls(settings, tiers, index)
        maintenance.recover(index, tiers)
        return archive

    def close(self) -> None:
        self.index.close()

    # -- ingest -------------------------------------------------------------

    def begin_upload(self, declared_size: int = 0, declared_sha256: str = "") -> Upload:
        """Start spooling one instance."""
        max_bytes = self.settings.get("ingest.max_instance_bytes")
        if declared_size > max_bytes:
            raise LimitExceededError(
                f"declared size {declared_size} bytes "
                f"is above ingest.max_instance_bytes ({max_bytes} bytes)"
            )
        path = self.spool_dir / f"upload-{uuid.uuid4().hex}.dcm"
        return Upload(path, declared_size, declared_sha256, max_bytes)

    def store_upload(
        self, upload: Upload, calling_application: str = ""
    ) -> StoreOutcome:
        """Store a finished upload (see :meth:`Ingestor.store`).

        The spool file is removed.
        """
        try:
            sha256, size = upload.finish()
            return self.ingestor.store(upload.path, sha256, size, calling_application)
        finally:
            upload.discard()

    def store_file(self, path: Path, calling_application: str = "") -> StoreOutcome:
        """Store a local DICOM file (copied through the spool)."""
        upload = self.begin_upload()
        with open(path, "rb") as fh:
            while chunk := fh.read(4 << 20):
                upload.write(chunk)
        return self.store_upload(upload, calling_application)

    # -- retrieve -----------------------------------------------------------

    def record(self, sop_uid: str) -> InstanceRecord:
        """The catalog record of an instance.

        Raises
        ------
        NotFoundError
            No instance has this UID.
        """
        check_uid(sop_uid, "SOPInstanceUID")
        record = self.index.catalog.get(sop_uid)
        if record is None:
            raise NotFoundError(f"no instance with SOP Instance UID {sop_uid}")
        return record

    def retrieve(
        self, sop_uid: str, version: str = ""
    ) -> tuple[InstanceRecord, Iterator[bytes]]:
        """The record and a verified byte stream of one instance."""
        record = self.record(sop_uid)
        return record, self.reader.stream(record, version)

    def frames(
        self, sop_uid: str, numbers: list[int], decode: bool, version: str = ""
    ) -> Iterator[FrameOut]:
        """Frames of one instance (1-based numbers; empty for all)."""
        record = self.record(sop_uid)
        return self.reader.frames(  # type: ignore[no-any-return]
            record, version, numbers, decode
        )

    # -- query ----------------------------------------------------------------

    def search(
        self,
        level: str,
        match: dict[str, str],
        include_fields: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        count_total: bool = False,
        *,
        fuzzy: bool = False,
        cursor: str = "",
    ) -> search.SearchPage:
        """Search the metadata index; see :func:`dicomvault.archive.search.search`."""
        return search.search(
            self.index.metadata,
            level,
            match,
            include_fields or [],
            limit,
            offset,
            count_total,
            fuzzy=fuzzy,
            cursor=cursor,
        )

    def sql(
        self, statement: str, batch_rows: int = 0, arrow: bool = False
    ) -> Iterator[sql.SqlBatch]:
        """Run read-only SQL; see :func:`dicomvault.archive.sql.run_query`."""
        return sql.run_query(  # type: ignore[no-any-return]
            self.index.metadata,
            statement,
            batch_rows=batch_rows or self.settings.get("sql.batch_rows"),
            max_rows=self.settings.get("sql.max_rows"),
            timeout_seconds=self.settings.get("sql.timeout_seconds"),
            arrow=arrow,
        )

    # -- maintenance ------------------------------------------------------------

    def rebuild_index(self) -> tuple[int, int, float]:
        """Recreate LMDB and DuckDB from the tiers; see ``maintenance``."""
        return maintenance.rebuild_index(  # type: ignore[no-any-return]
            self.index, self.tiers
        )

    def verify(self, repair: bool = False) -> maintenance.VerifyReport:
        """Re-hash every object; see :func:`maintenance.verify`."""
        return maintenance.verify(self.index, self.tiers, self.spool_dir, repair)

    def describe(self) -> dict[str, Any]:
        """Addresses and sizes for the start-up line and status output."""
        return {
            lk.DATA_DIR: str(self.settings.data_dir),
            "tiers": ",".join(f"{n}={t.url}" for n, t in self.tiers.items()),
            "instances": len(self.index.catalog),
        }

    # -- analytics ------------------------------------------------------------

    def add_extended_attribute(
        self, attribute: str, vr: str = ""
    ) -> extended.ExtendedAttribute:
        """Add a tag to the index as a column, back-filled for every instance.

        Changes the index (not the stored instances); see
        :func:`dicomvault.archive.index.extended.add_attribute`.
        """
        added = extended.add_attribute(self.index.metadata, attribute, vr)
        lk.log_event(
            logger,
            lk.INDEX_ATTRIBUTE_ADDED,
            **{
                lk.ATTRIBUTE_TAG: added.tag,
                lk.COLUMN: added.column,
                lk.ROWS: added.filled,
                lk.SECONDS: f"{added.seconds:.3f}",
            },
        )
        return added

    def extended_attributes(self) -> list[extended.ExtendedAttribute]:
        """The extended query attributes, in the order they were added."""
        return extended.list_attributes(  # type: ignore[no-any-return]
            self.index.metadata
        )

    def export_parquet(
        self, url: str, storage_options: dict[str, Any] | None = None
    ) -> tuple[list[export.ExportedTable], float]:
        """Write the metadata tables as Parquet; see :mod:`.export`."""
        return export.export_parquet(  # type: ignore[no-any-return]
            self.index.metadata, url, storage_options
        )


def clean_spool(spool_dir: Path) -> None:
    """Remove spooled uploads of a previous run (they were never acknowledged)."""
    if not spool_dir.exists():
        return
    for entry in spool_dir.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


__all__ = ["Archive", "DicomVaultError", "Upload", "clean_spool"]
