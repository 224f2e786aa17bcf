"""Failover reads: a primary tier that does not answer is read from a replica."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from dicomvault.archive.failover import FailoverTier
from dicomvault.tiers import LocalTier, ObjectKey, ObjectNotFoundError
from dicomvault.tiers.s3 import S3Tier
from tests.s3server import SeaweedServer

KEY = ObjectKey("studies/1/2/3/v/envelope.bin")
DATA = b"envelope bytes " * 100
SHA = hashlib.sha256(DATA).hexdigest()


class TestFailoverTier:
    def test_reads_fall_back_to_the_replica_with_one_line_per_fallback(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the primary S3 server killed, reads come from region east."""
        replica = LocalTier("hot", str(tmp_path / "east"))
        replica.put_bytes(KEY, DATA, sha256=SHA)
        with SeaweedServer(extra_args=["-volume.max=100"]) as seaweed:
            primary = S3Tier(
                "hot", "s3://dv-fail/hot", seaweed.storage_options(), attempts=2
            )
            primary.put_bytes(KEY, DATA, sha256=SHA)
            tier = FailoverTier(primary, {"east": replica})
            assert tier.read_bytes(KEY) == DATA
            assert "read.failover" not in caplog.text

            seaweed.crash()
            with caplog.at_level(logging.WARNING):
                assert tier.read_bytes(KEY) == DATA
                assert tier.read_range(KEY, 9, 5) == DATA[9:14]
        lines = [r.getMessage() for r in caplog.records if "read.failover" in r.message]
        assert (
            lines
            == [
                f"event=read.failover tier=hot key={KEY} region=east "
                "error=TierUnavailableError"
            ]
            * 2
        )

    def test_an_absent_object_is_not_served_from_a_replica(
        self, tmp_path: Path
    ) -> None:
        """Absent is an answer: it stays absent, so data loss is not hidden."""
        primary = LocalTier("hot", str(tmp_path / "primary"))
        replica = LocalTier("hot", str(tmp_path / "east"))
        replica.put_bytes(KEY, DATA, sha256=SHA)
        tier = FailoverTier(primary, {"east": replica})
        with pytest.raises(ObjectNotFoundError):
            tier.read_bytes(KEY)
