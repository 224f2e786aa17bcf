"""Parquet export of the metadata index, for engines beyond one machine.

DuckDB runs here with external access off, so it cannot write files itself:
it hands each table over as Arrow record batches, pyarrow encodes them as
Parquet, and fsspec writes the bytes to any URL it knows (a local folder,
``s3://``, ``gs://``, ``memory://``). Each table becomes ``<table>.parquet``
under the URL; a file is written to a temporary name and renamed into
place where the filesystem allows it, so a reader never sees half a file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import fsspec

from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import InvalidInputError
from dicomvault.archive.index.metadata import MetadataIndex

logger = logging.getLogger(__name__)

TABLES = ("patients", "studies", "series", "instances", "extended_attributes")
BATCH_ROWS = 65_536


@dataclass(frozen=True, slots=True)
class ExportedTable:
    """One table written: its name, row count and file URL."""

    table: str
    rows: int
    url: str


def export_parquet(
    index: MetadataIndex, url: str, storage_options: dict[str, Any] | None = None
) -> tuple[list[ExportedTable], float]:
    """Write every metadata table as Parquet under ``url``.

    Overwrites ``<table>.parquet`` files of an earlier export to the same
    URL; changes nothing in the archive.

    Returns
    -------
    tuple
        The tables written and the seconds taken.

    Raises
    ------
    InvalidInputError
        An empty URL or one fsspec has no filesystem for.
    """
    import pyarrow.parquet as pq

    if not url.strip():
        raise InvalidInputError("export needs a destination URL, e.g. s3://bucket/x")
    try:
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as err:
        raise InvalidInputError(
            f"cannot write to {url!r}: {err}; use a local folder or a URL "
            "fsspec knows (file://, s3://, memory://)"
        ) from None
    started = time.monotonic()
    fs.makedirs(root, exist_ok=True)

    written = []
    cur = index.cursor()
    for table in TABLES:
        # One snapshot per table; the index may take writes meanwhile.
        reader = cur.sql(f"SELECT * FROM {table}").to_arrow_reader(BATCH_ROWS)
        final = f"{root.rstrip('/')}/{table}.parquet"
        partial = f"{final}.partial"
        rows = 0
        with fs.open(partial, "wb") as out:
            with pq.ParquetWriter(out, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        fs.mv(partial, final)
        written.append(ExportedTable(table, rows, fs.unstrip_protocol(final)))
        fields = {lk.TABLE: table, lk.ROWS: rows, lk.URL: fs.unstrip_protocol(final)}
        lk.log_event(logger, lk.INDEX_EXPORTED, **fields)
    return written, time.monotonic() - started
