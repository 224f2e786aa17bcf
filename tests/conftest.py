"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from .s3server import SeaweedServer

# --- S3 (SeaweedFS) ---------------------------------------------------------
# One real S3 server for the whole session; each test gets its own bucket, so
# tests never see each other's objects. Tests that need several servers
# (replication) start their own with ``with SeaweedServer() as other: ...``.


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """A running SeaweedFS server with an S3 gateway on 127.0.0.1."""
    with SeaweedServer() as server:
        yield server


@pytest.fixture
def s3_tier_url(seaweed: SeaweedServer) -> Iterator[str]:
    """``s3://<fresh bucket>/tier`` on ``seaweed``; the bucket is removed after.

    Removing matters: SeaweedFS gives every bucket its own volumes, and the
    default server has room for the data of only two buckets at a time.
    """
    bucket = f"dv-test-{uuid.uuid4().hex[:20]}"
    yield f"s3://{bucket}/tier"
    seaweed.remove_bucket(bucket)


# --- end of S3 (SeaweedFS) --------------------------------------------------
