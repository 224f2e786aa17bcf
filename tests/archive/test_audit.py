"""Tests for archive/audit.py: the audit trail of a live server, and its log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import lmdb
import pydicom
import pytest

from dicomvault.archive.audit import AuditEvent, AuditLog, reads_audit_table
from dicomvault.archive.index.catalog import Catalog
from dicomvault.proto import archive_pb2
from dicomvault.tools.client import Client
from dicomvault.tools.client_security import Security
from tests.security import HS256_SECRET, jwt_env, make_token
from tests.server import ServerProcess

SAMPLE = "mr_brain_siemens_trio_implicit_le.dcm"


def client(server: ServerProcess, *roles: str, subject: str = "") -> Client:
    token = make_token(list(roles), subject=subject or "-".join(roles))
    return Client(server.address, Security(token=token))


def audit_rows(server: ServerProcess, where: str = "true") -> list[dict[str, Any]]:
    auditor = client(server, "auditor")
    try:
        columns, rows = auditor.sql(
            f"SELECT * FROM audit_events WHERE {where} ORDER BY audit_seq"
        )
    finally:
        auditor.close()
    return [dict(zip(columns, row)) for row in rows]


@pytest.fixture(scope="module")
def sample(corpus: Path) -> pydicom.Dataset:
    return pydicom.dcmread(corpus / SAMPLE, stop_before_pixels=True)


@pytest.fixture(scope="module")
def audited(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[ServerProcess]:
    """A server with tokens on which each kind of access happened once."""
    folder = tmp_path_factory.mktemp("audit")
    key = folder / "jwt.key"
    key.write_text(HS256_SECRET)
    with ServerProcess(folder / "data", env=jwt_env(key)) as server:
        writer = client(server, "writer", subject="wendy")
        (result,) = writer.store([corpus / SAMPLE])
        assert result.outcome == archive_pb2.STORED, result.reason
        writer.close()
        reader = client(server, "reader", subject="rob")
        reader.retrieve(result.sop_instance_uid, folder / "out.dcm")
        reader.search(archive_pb2.SERIES, {"StudyInstanceUID": result.study_uid})
        reader.sql("SELECT count(*) FROM studies WHERE patient_name = 'stc_test'")
        with pytest.raises(grpc.RpcError):
            reader.sql("SELECT * FROM audit_events")
        reader.close()
        anonymous = Client(server.address)
        with pytest.raises(grpc.RpcError):
            anonymous.search(archive_pb2.STUDY, {})
        anonymous.close()
        yield server


class TestAuditTrail:
    def test_store_is_recorded_with_its_uids_and_success(
        self, audited: ServerProcess, sample: pydicom.Dataset
    ) -> None:
        """One 'DICOM Instances Transferred' create event per stored instance."""
        (row,) = audit_rows(audited, "request = 'Store'")
        assert (
            row["event_id_code"],
            row["event_id_name"],
            row["event_action_code"],
            row["event_outcome_indicator"],
            row["user_id"],
            row["user_role_ids"],
            row["network_access_point_id"],
            row["network_access_point_type_code"],
        ) == (
            "110104",
            "DICOM Instances Transferred",
            "C",
            0,
            "wendy",
            ["writer"],
            "127.0.0.1",
            "2",
        )
        assert (row["study_uid"], row["series_uid"], row["sop_instance_uid"]) == (
            sample.StudyInstanceUID,
            sample.SeriesInstanceUID,
            sample.SOPInstanceUID,
        )

    def test_retrieve_is_recorded_as_a_read_with_study_and_series(
        self, audited: ServerProcess, sample: pydicom.Dataset
    ) -> None:
        """Retrieve: a read event naming the whole UID hierarchy."""
        (row,) = audit_rows(audited, "request = 'Retrieve'")
        assert (row["event_action_code"], row["event_outcome_indicator"]) == ("R", 0)
        assert (row["user_id"], row["study_uid"], row["sop_instance_uid"]) == (
            "rob",
            sample.StudyInstanceUID,
            sample.SOPInstanceUID,
        )

    def test_search_is_recorded_as_a_query_with_its_study(
        self, audited: ServerProcess, sample: pydicom.Dataset
    ) -> None:
        """Search: a Query event with the study matched and a digest."""
        (row,) = audit_rows(audited, "request = 'Search' AND user_id = 'rob'")
        assert (row["event_id_code"], row["event_action_code"]) == ("110112", "E")
        assert row["study_uid"] == sample.StudyInstanceUID
        assert len(row["participant_object_query_sha256"]) == 64

    def test_sql_is_recorded_with_a_digest_of_the_statement(
        self, audited: ServerProcess
    ) -> None:
        """SQL: a Query event; the statement itself is not kept."""
        rows = audit_rows(audited, "request = 'Sql' AND user_id = 'rob'")
        assert [(r["event_id_code"], r["event_outcome_indicator"]) for r in rows] == [
            ("110112", 0),
            ("110101", 4),
        ]
        assert rows[1]["event_outcome_description"] == "PERMISSION_DENIED"

    def test_missing_token_is_recorded_as_failed_authentication(
        self, audited: ServerProcess
    ) -> None:
        """A call without a token leaves a failed User Authentication event."""
        (row,) = audit_rows(audited, "event_id_code = '110114'")
        assert (
            row["event_outcome_indicator"],
            row["event_outcome_description"],
            row["request"],
            row["user_id"],
        ) == (4, "UNAUTHENTICATED", "Search", "unknown")

    def test_no_patient_data_reaches_the_audit_trail(
        self, audited: ServerProcess, sample: pydicom.Dataset
    ) -> None:
        """Neither the patient's name nor ID appears in any audit row or log line."""
        dump = json.dumps(audit_rows(audited), default=str)
        log = audited.log_path.read_text()
        for value in (str(sample.PatientName), str(sample.PatientID)):
            assert value and value not in dump
            assert value not in log

    def test_auditor_reading_the_trail_is_itself_recorded(
        self, audited: ServerProcess
    ) -> None:
        """Reading audit_events is an 'Audit Log Used' read event."""
        audit_rows(audited)
        rows = audit_rows(audited, "event_id_code = '110101' AND user_id = 'auditor'")
        assert rows and all(r["event_action_code"] == "R" for r in rows)

    def test_reader_is_denied_the_audit_table(self, audited: ServerProcess) -> None:
        """A reader naming audit_events gets PERMISSION_DENIED and why."""
        reader = client(audited, "reader", subject="rob")
        with pytest.raises(grpc.RpcError) as info:
            reader.sql("select * from main.AUDIT_EVENTS")
        reader.close()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == (
            "'rob' with roles ['reader'] may not perform sql.audit; "
            "it needs one of the roles ['auditor']"
        )

    def test_reader_cannot_reach_the_audit_table_by_a_hidden_name(
        self, audited: ServerProcess
    ) -> None:
        """The reader's database has no audit table, however it is named."""
        reader = client(audited, "reader")
        with pytest.raises(grpc.RpcError) as info:
            reader.sql("SELECT * FROM query_table('audit_' || 'events')")
        reader.close()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "audit_events" in info.value.details()

    def test_auditor_also_reads_the_metadata_tables(
        self, audited: ServerProcess
    ) -> None:
        """The auditor may count studies, without touching instance bytes."""
        auditor = client(audited, "auditor")
        _columns, rows = auditor.sql("SELECT count(*) FROM studies")
        auditor.close()
        assert rows == [[1]]

    def test_change_log_carries_each_event_as_audit_recorded(
        self, audited: ServerProcess
    ) -> None:
        """Every audit event is also an `audit.recorded` change, for replication."""
        path = audited.data_dir / "index" / "catalog.lmdb"
        env = lmdb.open(str(path), readonly=True, max_dbs=8, lock=True)
        try:
            changes, audit = env.open_db(b"changes"), env.open_db(b"audit")
            with env.begin() as txn:
                logged = [
                    json.loads(v)["event"]["audit_seq"]
                    for _k, v in txn.cursor(db=changes)
                    if json.loads(v)["type"] == "audit.recorded"
                ]
                stored = [json.loads(v)["audit_seq"] for _k, v in txn.cursor(db=audit)]
        finally:
            env.close()
        assert logged == stored == list(range(1, len(stored) + 1))


class TestAuditLog:
    def test_events_only_in_lmdb_are_copied_to_duckdb_at_open(
        self, tmp_path: Path
    ) -> None:
        """A crash between the LMDB and DuckDB writes loses no row."""
        catalog = Catalog(tmp_path / "catalog.lmdb")
        event = AuditEvent("110112", "Query", "E", 0, "Search", "alice")
        log = AuditLog(catalog, tmp_path / "audit.duckdb")
        log.record([event])
        log.close()
        catalog.append_audit([event.to_dict(), event.to_dict()])
        reopened = AuditLog(catalog, tmp_path / "audit.duckdb")
        rows = (
            reopened.cursor().execute("SELECT audit_seq FROM audit_events").fetchall()
        )
        reopened.close()
        catalog.close()
        assert rows == [(1,), (2,), (3,)]

    @pytest.mark.parametrize(
        ("statement", "expected"),
        [
            ("SELECT * FROM audit_events", True),
            ("WITH a AS (SELECT 1) SELECT * FROM a, main.Audit_Events", True),
            ("SELECT 'audit_events'", False),
            ("SELEC broken", False),
        ],
    )
    def test_reads_audit_table_looks_at_table_names_only(
        self, statement: str, expected: bool
    ) -> None:
        """Routing follows the parsed table names, not the text."""
        assert reads_audit_table(statement) is expected


class TestRestart:
    def test_restart_after_audited_calls_replays_nothing_into_the_index(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """audit.recorded changes are not index work: no index.replayed line."""
        server = ServerProcess(tmp_path / "data")
        with server:
            anyone = server.client()
            anyone.store([corpus / SAMPLE])
            anyone.search(archive_pb2.STUDY, {})
            anyone.close()
        with server:
            rows = audit_rows(server, "request = 'Search'")
        assert len(rows) == 1 and rows[0]["user_id"] == "anonymous"
        assert "event=index.replayed" not in server.log_path.read_text()
