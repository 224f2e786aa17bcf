"""The DuckDB metadata index: patients, studies, series and instances.

Derived data: rows are written from manifests, after the LMDB catalog has
committed, and replayed from the catalog's change log after a crash. Reads
use their own cursor, so queries run while an ingest goes on.

The database is opened with external access off: no SQL run here can read
or write files or reach the network.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from dicomvault.archive.index import columns as col
from dicomvault.archive.index import extended, views
from dicomvault.archive.manifest import Manifest

SCHEMA = """
CREATE TABLE IF NOT EXISTS index_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS patients (
    patient_key VARCHAR PRIMARY KEY,
    patient_id VARCHAR,
    issuer_of_patient_id VARCHAR,
    patient_name VARCHAR,
    patient_birth_date DATE,
    patient_sex VARCHAR
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid VARCHAR PRIMARY KEY,
    patient_key VARCHAR,
    patient_id VARCHAR,
    patient_name VARCHAR,
    study_date DATE,
    study_time VARCHAR,
    accession_number VARCHAR,
    study_id VARCHAR,
    study_description VARCHAR,
    referring_physician_name VARCHAR
);
CREATE TABLE IF NOT EXISTS series (
    series_uid VARCHAR PRIMARY KEY,
    study_uid VARCHAR,
    modality VARCHAR,
    series_number INTEGER,
    series_description VARCHAR,
    body_part_examined VARCHAR,
    series_date DATE
);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid VARCHAR PRIMARY KEY,
    series_uid VARCHAR,
    study_uid VARCHAR,
    sop_class_uid VARCHAR,
    instance_number INTEGER,
    transfer_syntax_uid VARCHAR,
    rows INTEGER,
    columns INTEGER,
    number_of_frames INTEGER,
    bits_allocated INTEGER,
    size_bytes BIGINT,
    sha256 VARCHAR,
    tier VARCHAR,
    version VARCHAR,
    stored_at TIMESTAMP,
    calling_application VARCHAR,
    dicom_json JSON
);
CREATE TABLE IF NOT EXISTS extended_attributes (
    tag VARCHAR PRIMARY KEY,
    keyword VARCHAR,
    vr VARCHAR,
    column_name VARCHAR,
    sql_type VARCHAR,
    added_at TIMESTAMP
);
"""

_TABLES = ("instances", "series", "studies", "patients")
# No SQL run on our databases may read or write files, reach the network or
# install code.
SAFE_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def _patient_key(meta: dict[str, Any]) -> str:
    issuer = col.text(meta, "IssuerOfPatientID") or ""
    patient_id = col.text(meta, "PatientID") or ""
    return f"{issuer}|{patient_id}"


def _rows(manifest: Manifest, tier: str) -> dict[str, tuple[Any, ...]]:
    meta = manifest.metadata
    pkey = _patient_key(meta)
    pixel = manifest.pixel or {}
    return {
        "patients": (
            pkey,
            col.text(meta, "PatientID"),
            col.text(meta, "IssuerOfPatientID"),
            col.text(meta, "PatientName"),
            col.date(meta, "PatientBirthDate"),
            col.text(meta, "PatientSex"),
        ),
        "studies": (
            manifest.study_uid,
            pkey,
            col.text(meta, "PatientID"),
            col.text(meta, "PatientName"),
            col.date(meta, "StudyDate"),
            col.text(meta, "StudyTime"),
            col.text(meta, "AccessionNumber"),
            col.text(meta, "StudyID"),
            col.text(meta, "StudyDescription"),
            col.text(meta, "ReferringPhysicianName"),
        ),
        "series": (
            manifest.series_uid,
            manifest.study_uid,
            col.text(meta, "Modality"),
            col.integer(meta, "SeriesNumber"),
            col.text(meta, "SeriesDescription"),
            col.text(meta, "BodyPartExamined"),
            col.date(meta, "SeriesDate"),
        ),
        "instances": (
            manifest.sop_instance_uid,
            manifest.series_uid,
            manifest.study_uid,
            manifest.sop_class_uid,
            col.integer(meta, "InstanceNumber"),
            manifest.transfer_syntax_uid,
            pixel.get("rows"),
            pixel.get("columns"),
            manifest.frames.get("count")
            or (pixel.get("number_of_frames") if pixel else None),
            pixel.get("bits_allocated"),
            manifest.size,
            manifest.sha256,
            tier,
            manifest.version,
            dt.datetime.fromisoformat(manifest.stored_at).replace(tzinfo=None),
            manifest.calling_application,
            json.dumps(meta, sort_keys=True),
        ),
    }


@dataclass(slots=True)
class _Pending:
    manifest: Manifest
    tier: str
    seq: int


class MetadataIndex:
    """Typed metadata tables in one DuckDB file.

    Parameters
    ----------
    path
        The DuckDB database file; created when missing.
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._con = duckdb.connect(str(path), config=dict(SAFE_CONFIG))
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._pending: list[_Pending] = []
        # (table, key) rows known to be committed; see _insert.
        self._known: set[tuple[str, str]] = set()
        self._fresh: list[tuple[str, str]] = []
        self._errors: dict[int, Exception] = {}
        self._con.execute(SCHEMA)
        views.install(self._con)
        self._columns = {
            table: [
                str(r[0])
                for r in self._con.execute(
                    "SELECT column_name FROM duckdb_columns() "
                    "WHERE table_name = ? ORDER BY column_index",
                    [table],
                ).fetchall()
            ]
            for table in _TABLES
        }

    def close(self) -> None:
        with self._write_lock:
            self._con.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one reader thread."""
        return self._con.cursor()

    def applied_seq(self) -> int:
        """The catalog change sequence this index has caught up to."""
        row = (
            self.cursor()
            .execute("SELECT value FROM index_meta WHERE key = 'applied_seq'")
            .fetchone()
        )
        return int(row[0]) if row else 0

    def _set_seq(self, cur: duckdb.DuckDBPyConnection, seq: int) -> None:
        cur.execute(
            "INSERT OR REPLACE INTO index_meta VALUES ('applied_seq', ?)", [str(seq)]
        )

    def _insert(
        self, cur: duckdb.DuckDBPyConnection, manifest: Manifest, tier: str
    ) -> None:
        for table, row in _rows(manifest, tier).items():
            marks = ", ".join("?" for _ in row)
            names = ", ".join(self._columns[table][: len(row)])
            if table == "instances":
                # A new version of a stored UID replaces its row.
                cur.execute(
                    f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})",
                    list(row),
                )
                continue
            # Patients, studies and series keep the values of their first
            # instance. Keys known to be present skip the statement: a DuckDB
            # upsert costs milliseconds, and most instances join a known series.
            key = (table, str(row[0]))
            if key in self._known:
                continue
            cur.execute(
                f"INSERT INTO {table} ({names}) VALUES ({marks}) "
                "ON CONFLICT DO NOTHING",
                list(row),
            )
            self._fresh.append(key)
        # Extended query attributes are columns after the built-in ones.
        attributes = extended.registered(cur)
        if attributes:
            cur.execute(extended.fill_sql(attributes), [manifest.sop_instance_uid])

    def apply(self, manifest: Manifest, tier: str, seq: int) -> None:
        """Index one stored instance version and record ``seq`` as applied."""
        self.enqueue(manifest, tier, seq)
        self.flush(seq)

    def enqueue(self, manifest: Manifest, tier: str, seq: int) -> None:
        """Queue a version for the next group commit; calls in ``seq`` order."""
        with self._queue_lock:
            self._pending.append(_Pending(manifest, tier, seq))

    def flush(self, seq: int) -> None:
        """Return once change ``seq`` is committed (group commit).

        The first caller to get the write lock commits every queued version
        in one transaction; the others find theirs done.

        Raises
        ------
        Exception
            Whatever failed the transaction that held ``seq``.
        """
        with self._write_lock:
            with self._queue_lock:
                batch, self._pending = self._pending, []
            if batch:
                self._commit(batch)
            error = self._errors.pop(seq, None)
        if error is not None:
            raise error

    def _remember(self, committed: bool) -> None:
        if committed:
            if len(self._known) > 1_000_000:
                self._known.clear()
            self._known.update(self._fresh)
        self._fresh.clear()

    def _commit(self, batch: list[_Pending]) -> None:
        cur = self._con.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                for pending in batch:
                    self._insert(cur, pending.manifest, pending.tier)
                self._set_seq(cur, batch[-1].seq)
                cur.execute("COMMIT")
                self._remember(True)
            except BaseException:
                self._remember(False)
                cur.execute("ROLLBACK")
                raise
        except Exception as err:  # noqa: BLE001 - handed to every waiting caller
            for pending in batch:
                self._errors[pending.seq] = err

    def replace_all(self, entries: Iterable[tuple[Manifest, str]], seq: int) -> None:
        """Empty every table and refill it, in one transaction."""
        with self._write_lock:
            cur = self._con.cursor()
            cur.execute("BEGIN TRANSACTION")
            self._known.clear()
            try:
                for table in _TABLES:
                    cur.execute(f"DELETE FROM {table}")
                for manifest, tier in entries:
                    self._insert(cur, manifest, tier)
                self._set_seq(cur, seq)
                cur.execute("COMMIT")
                self._remember(True)
            except BaseException:
                self._remember(False)
                cur.execute("ROLLBACK")
                raise

    def remove_instances(self, sop_uids: list[str], seq: int) -> None:
        """Drop instances' rows (and emptied series and studies); mark ``seq``.

        Queued versions are committed first, so the applied mark stays in
        sequence order.
        """
        with self._write_lock:
            with self._queue_lock:
                batch, self._pending = self._pending, []
            if batch:
                self._commit(batch)
            cur = self._con.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                for sop_uid in sop_uids:
                    cur.execute(
                        "DELETE FROM instances WHERE sop_instance_uid = ?", [sop_uid]
                    )
                cur.execute(
                    "DELETE FROM series WHERE series_uid NOT IN "
                    "(SELECT series_uid FROM instances)"
                )
                cur.execute(
                    "DELETE FROM studies WHERE study_uid NOT IN "
                    "(SELECT study_uid FROM instances)"
                )
                self._set_seq(cur, seq)
                cur.execute("COMMIT")
                # Emptied series and studies are gone: forget known keys.
                self._known.clear()
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside one write transaction, committed on success."""
        with self._write_lock:
            cur = self._con.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
