"""The tier contract for :class:`~dicomvault.tiers.s3.S3Tier`, on SeaweedFS.

Beyond the contract: the error table, the retry loop, and what only S3 does
(bucket creation, a dead endpoint, deleting the source of a move).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from dicomvault.tiers import (
    ObjectExistsError,
    ObjectKey,
    ObjectNotFoundError,
    TierError,
    TierIntegrityError,
    TierUnavailableError,
)
from dicomvault.tiers.s3 import S3Tier, translate_error, with_retries

from ..s3server import SeaweedServer
from .contract import Corrupt, TierContract


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TestS3Tier(TierContract):
    """S3Tier passes the contract against a real SeaweedFS, a bucket per test."""

    @pytest.fixture
    def storage_options(self, seaweed: SeaweedServer) -> dict[str, Any]:
        return seaweed.storage_options()

    @pytest.fixture
    def tier(self, s3_tier_url: str, storage_options: dict[str, Any]) -> S3Tier:
        return S3Tier("hot", s3_tier_url, storage_options)

    @pytest.fixture
    def corrupt(self, tier: S3Tier, seaweed: SeaweedServer) -> Corrupt:
        fs = seaweed.filesystem()

        def flip(key: ObjectKey, offset: int) -> None:
            path = tier.path_of(key)
            data = bytearray(fs.cat_file(path))
            data[offset] ^= 0xFF
            fs.pipe_file(path, bytes(data))

        return flip


class TestS3TierOnly:
    """Behaviour specific to the S3 backend."""

    def test_missing_bucket_is_created(
        self, seaweed: SeaweedServer, s3_tier_url: str
    ) -> None:
        """Constructing a tier creates its bucket when it does not exist."""
        bucket = s3_tier_url.removeprefix("s3://").split("/")[0]
        fs = seaweed.filesystem()
        # SeaweedFS leaves buckets out of ListBuckets while no identities are
        # configured, so ask for the bucket itself.
        assert not fs.exists(bucket)

        S3Tier("hot", s3_tier_url, seaweed.storage_options())

        assert fs.exists(bucket)

    def test_objects_live_under_the_url_prefix(
        self, seaweed: SeaweedServer, s3_tier_url: str
    ) -> None:
        """Keys are stored below the URL's prefix and listed relative to it."""
        tier = S3Tier("hot", s3_tier_url, seaweed.storage_options())
        tier.put_bytes(ObjectKey("a/b"), b"1", sha256=_sha256(b"1"))
        fs = seaweed.filesystem()

        bucket_and_prefix = s3_tier_url.removeprefix("s3://")

        assert fs.find(bucket_and_prefix) == [f"{bucket_and_prefix}/a/b"]
        assert list(tier.list()) == ["a/b"]

    def test_move_deletes_the_source_after_a_verified_upload(
        self, seaweed: SeaweedServer, s3_tier_url: str, tmp_path: Path
    ) -> None:
        """put_file(move=True) removes the local file once the object checks out."""
        tier = S3Tier("hot", s3_tier_url, seaweed.storage_options())
        source = tmp_path / "source.bin"
        source.write_bytes(b"payload")

        tier.put_file(ObjectKey("m"), source, sha256=_sha256(b"payload"), move=True)

        assert not source.exists()
        assert tier.read_bytes(ObjectKey("m")) == b"payload"

    def test_missing_source_file_is_reported_as_such(
        self, seaweed: SeaweedServer, s3_tier_url: str, tmp_path: Path
    ) -> None:
        """A missing local source is the caller's FileNotFoundError, not a tier's."""
        tier = S3Tier("hot", s3_tier_url, seaweed.storage_options())
        source = tmp_path / "nope.bin"

        with pytest.raises(FileNotFoundError, match="source file .* not found") as info:
            tier.put_file(ObjectKey("m"), source, sha256=_sha256(b""))

        assert not isinstance(info.value, ObjectNotFoundError)

    def test_dead_endpoint_is_unavailable_not_absent(self) -> None:
        """Nobody listening on the endpoint raises TierUnavailableError."""
        options = {
            "key": "any",
            "secret": "any",
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"},
        }

        with pytest.raises(TierUnavailableError, match="EndpointConnectionError"):
            S3Tier("cold", "s3://dead-bucket", options, attempts=1)

    @pytest.mark.parametrize(
        "url", ["s3://", "s3:///prefix", "s3://bucket/../x", "file:///tmp/x"]
    )
    def test_bad_url_is_refused_before_any_request(self, url: str) -> None:
        """A URL without a bucket, with an unsafe prefix or another scheme fails."""
        with pytest.raises(ValueError):
            S3Tier("hot", url, {})


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


class TestErrorTable:
    """translate_error maps every provider error to a tier error."""

    @pytest.mark.parametrize(
        ("err", "expected"),
        [
            (_client_error("NoSuchKey", 404), ObjectNotFoundError),
            (_client_error("404", 404), ObjectNotFoundError),
            (_client_error("NoSuchBucket", 404), ObjectNotFoundError),
            (_client_error("SlowDown", 503), TierUnavailableError),
            (_client_error("503", 503), TierUnavailableError),
            (_client_error("InternalError", 500), TierUnavailableError),
            (_client_error("TooManyRequests", 429), TierUnavailableError),
            (_client_error("WhoKnows", 502), TierUnavailableError),
            (_client_error("AccessDenied", 403), TierError),
            (_client_error("InvalidRange", 416), TierError),
            (FileNotFoundError("bucket/key"), ObjectNotFoundError),
            (FileExistsError("bucket"), ObjectExistsError),
            (
                botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"),
                TierUnavailableError,
            ),
            (
                botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"),
                TierUnavailableError,
            ),
            (TimeoutError("slow"), TierUnavailableError),
            (PermissionError("denied"), TierError),
        ],
        ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
    )
    def test_provider_error_becomes_the_right_tier_error(
        self, err: Exception, expected: type[TierError]
    ) -> None:
        """Each provider error lands on exactly the expected tier error class."""
        translated = translate_error(err, op="read", key="k", tier="hot")

        assert type(translated) is expected

    def test_s3fs_wrapped_client_error_is_read_through_its_cause(self) -> None:
        """s3fs's OSError keeps the S3 code in __cause__; the table reads it."""
        wrapped = OSError(5, "InternalError")
        wrapped.__cause__ = _client_error("SlowDown", 503)

        translated = translate_error(wrapped, op="put", key="k", tier="hot")

        assert isinstance(translated, TierUnavailableError)
        assert str(translated) == (
            "tier 'hot' did not complete put of 'k': SlowDown (HTTP 503): "
            "[Errno 5] InternalError; the call may be retried"
        )


class TestRetries:
    """with_retries retries only transient errors, with capped backoff."""

    def test_transient_error_is_retried_until_success(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Two TierUnavailableErrors then success: three calls, two DEBUG lines."""
        outcomes: list[Exception | str] = [
            TierUnavailableError("down"),
            TierUnavailableError("down"),
            "ok",
        ]

        def call() -> str:
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        with caplog.at_level(logging.DEBUG, logger="dicomvault.tiers.s3"):
            result = with_retries(call, op="read", key="k", tier="hot", base_delay=0)

        assert result == "ok"
        assert outcomes == []
        assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 2
        assert "event=tier.retry tier=hot op=read key=k attempt=1" in caplog.text

    def test_transient_error_is_raised_after_the_last_attempt(self) -> None:
        """After ``attempts`` failures the last error is raised unchanged."""
        calls = 0

        def call() -> None:
            nonlocal calls
            calls += 1
            raise TierUnavailableError(f"down {calls}")

        with pytest.raises(TierUnavailableError, match="^down 3$"):
            with_retries(call, op="read", key="k", tier="hot", attempts=3, base_delay=0)

        assert calls == 3

    @pytest.mark.parametrize(
        "err",
        [ObjectNotFoundError("gone"), TierIntegrityError("bad"), TierError("no")],
        ids=lambda err: type(err).__name__,
    )
    def test_permanent_error_is_not_retried(self, err: TierError) -> None:
        """Not found, integrity and other refusals fail on the first call."""
        calls = 0

        def call() -> None:
            nonlocal calls
            calls += 1
            raise err

        with pytest.raises(type(err)):
            with_retries(call, op="read", key="k", tier="hot", base_delay=0)

        assert calls == 1
