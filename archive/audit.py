"""The audit trail: who did what to which study, from where, with what outcome.

Every access and every change becomes one :class:`AuditEvent`, named in the
vocabulary of IHE ATNA and DICOM PS3.15 Annex A.5 (audit messages):

- **EventID** (``event_id_code``/``event_id_name``): what happened, a DCM
  code such as 110104 "DICOM Instances Transferred" or 110112 "Query".
- **EventActionCode**: C create, R read, U update, D delete, E execute.
- **EventOutcomeIndicator**: 0 success, 4 minor failure (the request was
  refused), 8 serious failure (the archive failed), 12 major failure.
- **ActiveParticipant**: the requesting user (token subject and roles) and
  its network access point (the peer address, type code 2 = IP address).
- **ParticipantObjectIdentification**: the study, series and SOP instance
  UIDs the event touched, and for a query the SHA-256 of its text
  (PS3.15 puts the query itself in ParticipantObjectQuery; we keep only a
  digest because a query may name a patient).

No patient name, patient ID, birth date or free text is ever recorded: only
UIDs, codes, subjects of tokens and addresses.

Events are appended to the LMDB catalog (an append-only ``audit`` database,
plus one ``audit.recorded`` change each in the change log, so replication
carries them) before the call returns, and within a second to the DuckDB
table ``audit_events`` in its own file,
``index/audit.duckdb``. That file is separate from the metadata index on
purpose: SQL from any role but ``auditor`` runs on a database in which the
audit table does not exist, so no query trick can reach it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from dicomvault.archive import logkeys as lk
from dicomvault.archive.index.catalog import Catalog
from dicomvault.archive.index.metadata import SAFE_CONFIG

logger = logging.getLogger(__name__)

SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12

# (EventID code, display name) from DICOM PS3.16 CID 403 "Audit Event ID".
APPLICATION_ACTIVITY = ("110100", "Application Activity")
AUDIT_LOG_USED = ("110101", "Audit Log Used")
INSTANCES_ACCESSED = ("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = ("110104", "DICOM Instances Transferred")
QUERY = ("110112", "Query")
SECURITY_ALERT = ("110113", "Security Alert")
USER_AUTHENTICATION = ("110114", "User Authentication")

COLUMNS = (
    "audit_seq",
    "event_date_time",
    "event_id_code",
    "event_id_name",
    "event_action_code",
    "event_outcome_indicator",
    "event_outcome_description",
    "request",
    "user_id",
    "user_role_ids",
    "user_is_requestor",
    "network_access_point_id",
    "network_access_point_type_code",
    "audit_source_id",
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "participant_object_query_sha256",
)
AUDIT_SOURCE_ID = socket.gethostname()
_TYPES = (
    "BIGINT TIMESTAMP VARCHAR VARCHAR VARCHAR INTEGER VARCHAR VARCHAR VARCHAR "
    "VARCHAR[] BOOLEAN VARCHAR VARCHAR VARCHAR VARCHAR VARCHAR VARCHAR VARCHAR"
).split()
_DEFINITIONS = ", ".join(
    f"{name} {kind}" for name, kind in zip(COLUMNS, _TYPES, strict=True)
)
SCHEMA = f"CREATE TABLE IF NOT EXISTS audit_events ({_DEFINITIONS})"
_INSERT_JSON = (
    "INSERT INTO audit_events BY NAME SELECT "
    f"unnest(CAST(?::JSON AS STRUCT({_DEFINITIONS})[]), recursive := true)"
)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record (field names follow PS3.15 Annex A.5)."""

    event_id_code: str
    event_id_name: str
    event_action_code: str
    event_outcome_indicator: int
    request: str
    user_id: str
    user_role_ids: tuple[str, ...] = ()
    network_access_point_id: str = ""
    event_outcome_description: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    participant_object_query_sha256: str = ""
    event_date_time: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat()
    )

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["user_role_ids"] = list(self.user_role_ids)
        body["user_is_requestor"] = True
        # PS3.15 NetworkAccessPointTypeCode: 1 machine name, 2 IP address.
        body["network_access_point_type_code"] = "2"
        body["audit_source_id"] = AUDIT_SOURCE_ID
        return body


class AuditLog:
    """Appends audit events to LMDB and DuckDB; opens ``audit_events`` to SQL.

    :meth:`record` returns once the events are durable in LMDB (group
    commit: concurrent callers share one transaction). Rows reach the
    DuckDB table from a background thread within ``TABLE_DELAY`` seconds;
    :meth:`flush_table` waits for them, and SQL on the table calls it first.

    Parameters
    ----------
    catalog
        The catalog whose ``audit`` database and change log receive events.
    path
        The DuckDB file of the ``audit_events`` table; created when missing.
    """

    TABLE_DELAY = 0.5

    def __init__(self, catalog: Catalog, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.catalog = catalog
        self.path = path
        self._con = duckdb.connect(str(path), config=dict(SAFE_CONFIG))
        self._con.execute(SCHEMA)
        self._queue_lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._lmdb_lock = threading.Lock()
        # Rows are queued for DuckDB in LMDB order and inserted in that order,
        # so after a crash only a tail of events can be missing from DuckDB;
        # catch_up copies that tail at the next open.
        self._table_lock = threading.Lock()
        self._table_queue: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.catch_up()
        self._writer = threading.Thread(
            target=self._write_table, name="audit-table", daemon=True
        )
        self._writer.start()

    def close(self) -> None:
        self._stop.set()
        self._writer.join()
        self.flush_table()
        with self._table_lock:
            self._con.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one reader thread (read-only SQL)."""
        return self._con.cursor()

    def catch_up(self) -> int:
        """Copy events that reached LMDB but not DuckDB (a crash between)."""
        with self._table_lock:
            cur = self._con.cursor()
            row = cur.execute("SELECT max(audit_seq) FROM audit_events").fetchone()
            done = int(row[0]) if row and row[0] is not None else 0
            bodies = list(self.catalog.audit_since(done))
            self._insert(cur, bodies)
        return len(bodies)

    def record(self, events: list[AuditEvent]) -> None:
        """Append events durably to LMDB; queue them for the SQL table.

        Raises
        ------
        lmdb.Error
            The events could not be written; the caller decides whether the
            request may still be answered (the gRPC gate logs an ERROR).
        """
        if not events:
            return
        with self._queue_lock:
            self._pending.extend(event.to_dict() for event in events)
        # Group commit: whoever holds the lock writes every queued event, so
        # ours are durable once we hold it and the queue is empty of them.
        with self._lmdb_lock:
            with self._queue_lock:
                batch, self._pending = self._pending, []
            if batch:
                last = self.catalog.append_audit(batch)
                first = last - len(batch) + 1
                numbered = [{"audit_seq": first + i, **b} for i, b in enumerate(batch)]
                with self._queue_lock:
                    self._table_queue.extend(numbered)
        for event in events:
            lk.log_event(
                logger,
                lk.AUDIT_RECORDED,
                **{
                    lk.AUDIT_EVENT_ID: event.event_id_code,
                    lk.AUDIT_ACTION: event.event_action_code,
                    lk.AUDIT_OUTCOME: event.event_outcome_indicator,
                    lk.AUDIT_USER: event.user_id,
                    lk.AUDIT_REQUEST: event.request,
                    lk.STUDY_UID: event.study_uid or "-",
                    lk.SOP_INSTANCE_UID: event.sop_instance_uid or "-",
                },
            )

    def flush_table(self) -> None:
        """Return once every recorded event is a row of ``audit_events``."""
        with self._table_lock:
            with self._queue_lock:
                bodies, self._table_queue = self._table_queue, []
            self._insert(self._con.cursor(), bodies)

    def _write_table(self) -> None:
        while not self._stop.wait(self.TABLE_DELAY):
            try:
                self.flush_table()
            except Exception:  # noqa: BLE001 - retried on the next round
                logger.exception("audit table write failed; rows stay queued")

    def _insert(
        self, cur: duckdb.DuckDBPyConnection, bodies: list[dict[str, Any]]
    ) -> None:
        if not bodies:
            return
        cur.execute("BEGIN TRANSACTION")
        try:
            # One JSON parameter for the whole batch: DuckDB parses it in one
            # go, where executemany or a long VALUES list binds every value.
            cur.execute(_INSERT_JSON, [json.dumps(bodies)])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            with self._queue_lock:
                self._table_queue[:0] = bodies
            raise


AUDIT_TABLE = "audit_events"


def reads_audit_table(statement: str) -> bool:
    """True when SQL names the ``audit_events`` table (parse errors: False).

    Only routing depends on this: a statement that hides the name (string
    tricks, table functions) runs on the metadata database, where the table
    does not exist.
    """
    try:
        names = duckdb.connect().get_table_names(statement)
    except duckdb.Error:
        return False
    return any(name.rsplit(".", 1)[-1].lower() == AUDIT_TABLE for name in names)


__all__ = ["AUDIT_TABLE", "AuditEvent", "AuditLog", "reads_audit_table"]
