"""Configured input limits: each refusal names its limit and stores nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import LimitExceededError
from dicomvault.archive.service import Archive
from dicomvault.proto import archive_pb2
from dicomvault.tools.client import upload_messages
from tests.server import ServerProcess

from .hostile import make_instance

LIMITS = {
    "ingest.max_sequence_depth": 4,
    "ingest.max_element_bytes": 4096,
    "ingest.max_upload_bytes": 200_000,
}


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    settings = load_settings(
        overrides={"server.data_dir": str(tmp_path / "data"), **LIMITS}, environ={}
    )
    archive = Archive.open(settings)
    yield archive
    archive.close()


class TestInputLimits:
    """Sequence depth, element length and instance size, in process."""

    def test_sequences_nested_past_the_limit_are_refused(
        self, archive: Archive, tmp_path: Path
    ) -> None:
        """Five nested sequences break a limit of four; nothing is stored."""
        path = make_instance(tmp_path / "deep.dcm", depth=5)

        with pytest.raises(
            LimitExceededError,
            match=r"sequences nest 5 levels deep at element \(0008,1140\), above "
            r"ingest.max_sequence_depth \(4\); nothing was stored",
        ):
            archive.store_file(path)

        assert archive.index.catalog.get("1.2.826.0.1.3680043.8.498.1") is None

    def test_sequences_at_the_limit_are_stored(
        self, archive: Archive, tmp_path: Path
    ) -> None:
        """Exactly four nested sequences are within a limit of four."""
        path = make_instance(tmp_path / "ok.dcm", depth=3)

        assert archive.store_file(path).outcome == "stored"

    def test_thousand_nested_sequences_are_refused_not_a_crash(
        self, archive: Archive, tmp_path: Path
    ) -> None:
        """Nesting deep enough to exhaust a recursive parser is a limit error."""
        path = tmp_path / "abyss.dcm"
        # pydicom cannot write this depth itself, so the items are spliced in.
        make_instance(path, depth=1)
        data = path.read_bytes()
        item = bytes.fromhex("08004011") + b"SQ\0\0" + b"\xff\xff\xff\xff"
        start = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        end_item = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        end_seq = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        nest = (item + start) * 1000 + (end_item + end_seq) * 1000
        marker = bytes.fromhex("08004011")
        at = data.index(marker)
        path.write_bytes(data[:at] + nest + data[at:])

        with pytest.raises(LimitExceededError, match="ingest.max_sequence_depth"):
            archive.store_file(path)

    def test_element_longer_than_the_limit_is_refused(
        self, archive: Archive, tmp_path: Path
    ) -> None:
        """A 5000-byte private element breaks a 4096-byte limit."""
        path = make_instance(tmp_path / "long.dcm", long_value=5000)

        with pytest.raises(
            LimitExceededError,
            match=re.escape(
                "element (0009,1010) holds 5000 bytes, above "
                "ingest.max_element_bytes (4096 bytes); nothing was stored"
            ),
        ):
            archive.store_file(path)

        assert archive.index.catalog.get("1.2.826.0.1.3680043.8.498.1") is None

    def test_element_at_the_limit_is_stored(
        self, archive: Archive, tmp_path: Path
    ) -> None:
        """An element of exactly the limit's length is accepted."""
        path = make_instance(tmp_path / "edge.dcm", long_value=4096)

        assert archive.store_file(path).outcome == "stored"

    def test_limits_are_settings_with_environment_variables(self) -> None:
        """Each limit reads from DICOMVAULT_INGEST__...; a bad value names it."""
        settings = load_settings(environ={"DICOMVAULT_INGEST__MAX_SEQUENCE_DEPTH": "3"})

        assert settings.get("ingest.max_sequence_depth") == 3
        with pytest.raises(Exception, match="ingest.max_element_bytes.*greater than 0"):
            load_settings(environ={"DICOMVAULT_INGEST__MAX_ELEMENT_BYTES": "0"})


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("limited")
    env = {
        "DICOMVAULT_INGEST__MAX_SEQUENCE_DEPTH": "4",
        "DICOMVAULT_INGEST__MAX_ELEMENT_BYTES": "4096",
        "DICOMVAULT_INGEST__MAX_UPLOAD_BYTES": "200000",
        "DICOMVAULT_INGEST__MAX_INSTANCE_BYTES": "100000",
    }
    with ServerProcess(folder / "data", env=env) as proc:
        yield proc


class TestInputLimitsOverGrpc:
    """The same limits through a live server, which keeps answering."""

    def test_each_limit_rejects_its_instance_with_a_reason_naming_it(
        self, limited_server: ServerProcess, tmp_path: Path
    ) -> None:
        """Deep, long and oversized instances are rejected; a good one is stored."""
        files = [
            make_instance(tmp_path / "deep.dcm", "1.2.3.1", depth=5),
            make_instance(tmp_path / "long.dcm", "1.2.3.2", long_value=5000),
            make_instance(tmp_path / "big.dcm", "1.2.3.3", long_value=0),
            make_instance(tmp_path / "good.dcm", "1.2.3.4"),
        ]
        big = files[2]
        big.write_bytes(big.read_bytes() + b"\0" * 100_001)
        client = limited_server.client()

        results = client.store(files)

        reasons = [r.reason for r in results]
        assert [r.outcome for r in results[:3]] == [archive_pb2.REJECTED] * 3
        assert "ingest.max_sequence_depth (4)" in reasons[0]
        assert "ingest.max_element_bytes (4096 bytes)" in reasons[1]
        assert "ingest.max_instance_bytes (100000 bytes)" in reasons[2]
        assert results[3].outcome == archive_pb2.STORED

    def test_stream_past_the_upload_limit_ends_with_resource_exhausted(
        self, limited_server: ServerProcess, tmp_path: Path
    ) -> None:
        """Three 90 kB instances in one stream break a 200 kB stream limit."""
        files = [
            make_instance(tmp_path / f"s{i}.dcm", f"1.2.4.{i}", long_value=0)
            for i in range(3)
        ]
        for path in files:
            path.write_bytes(path.read_bytes() + b"\0" * 90_000)
        client = limited_server.client()

        with pytest.raises(grpc.RpcError) as caught:
            list(client.archive.Store(upload_messages(files)).results)

        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ingest.max_upload_bytes (200000 bytes)" in caught.value.details()
        stored = client.sql(
            "SELECT sop_instance_uid FROM instances "
            "WHERE sop_instance_uid LIKE '1.2.4.%' ORDER BY 1"
        )[1]
        assert stored == [["1.2.4.0"], ["1.2.4.1"]]
        assert (
            client.store([make_instance(tmp_path / "after.dcm", "1.2.4.9")])[0].outcome
            == archive_pb2.STORED
        )
