"""``dicomvault attributes`` and ``dicomvault export parquet`` against a live
server, and Arrow batches from ``Query.Sql`` over gRPC."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import grpc
import pyarrow as pa
import pytest

from dicomvault.proto import query_pb2
from tests.server import ServerProcess, corpus_dir

DICOMVAULT = Path(sys.executable).parent / "dicomvault"
FILES = ("mr_brain_siemens_trio_implicit_le.dcm", "ct_wg04_ct1_explicit_be.dcm")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DICOMVAULT), *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("cliq") / "data") as proc:
        client = proc.client()
        client.store([corpus_dir() / name for name in FILES])
        client.close()
        yield proc


class TestAttributesCommand:
    def test_add_backfills_and_list_shows_it(self, server) -> None:
        """attributes add reports the filled rows; list shows the column."""
        out = run("attributes", "add", "SliceThickness", "--server", server.address)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(
            "added SliceThickness (00180050, VR DS) as instances.x_slice_thickness "
            "DOUBLE: 2 instances filled"
        )
        listed = run("attributes", "list", "--server", server.address)
        assert (
            "00180050  SliceThickness  DS  x_slice_thickness  DOUBLE" in listed.stdout
        )

    def test_private_tag_without_vr_fails_with_the_reason(self, server) -> None:
        """A private tag without --vr exits 1 with INVALID_ARGUMENT."""
        out = run("attributes", "add", "00191012", "--server", server.address)
        assert out.returncode == 1
        assert "INVALID_ARGUMENT" in out.stderr and "give the VR" in out.stderr


class TestExportCommand:
    def test_export_parquet_reads_back_with_duckdb(self, server, tmp_path) -> None:
        """Each exported file holds the rows the index holds."""
        out = run(
            "export", "parquet", "--to", str(tmp_path), "--server", server.address
        )
        assert out.returncode == 0, out.stderr
        assert "instances: 2 rows" in out.stdout
        con = duckdb.connect()
        uids = con.execute(
            f"SELECT sop_instance_uid FROM read_parquet('{tmp_path}/instances.parquet')"
        ).fetchall()
        client = server.client()
        _, rows = client.sql("SELECT sop_instance_uid FROM instances")
        client.close()
        assert sorted(u[0] for u in uids) == sorted(r[0] for r in rows)


class TestArrowSql:
    def test_sql_streams_arrow_ipc_batches(self, server) -> None:
        """With arrow set, each batch is an Arrow IPC stream and rows_json empty."""
        client = server.client()
        batches = list(
            client.query.Sql(
                query_pb2.SqlRequest(
                    sql="SELECT sop_instance_uid, rows FROM instances ORDER BY 1",
                    batch_rows=1,
                    arrow=True,
                )
            )
        )
        client.close()
        assert len(batches) == 2 and not batches[0].rows_json
        table = pa.concat_tables(
            pa.ipc.open_stream(b.arrow_ipc).read_all() for b in batches
        )
        _, rows = server.client().sql(
            "SELECT sop_instance_uid, rows FROM instances ORDER BY 1"
        )
        assert [list(r.values()) for r in table.to_pylist()] == rows

    def test_refused_sql_in_arrow_mode_is_permission_denied(self, server) -> None:
        """A write in Arrow mode is refused with the read-only reason."""
        client = server.client()
        with pytest.raises(grpc.RpcError) as caught:
            list(
                client.query.Sql(
                    query_pb2.SqlRequest(sql="DELETE FROM instances", arrow=True)
                )
            )
        client.close()
        assert "read-only: DELETE" in caught.value.details()
