"""A tier in an S3 bucket: ``s3://bucket/prefix``.

Objects are S3 objects under ``prefix``, reached through s3fs. A write checks
that the key is free, uploads, then reads the object back and compares its
SHA-256 with the caller's; on a mismatch the object is deleted before the
error is raised.

Two things keep provider details inside this module:

- :func:`translate_error` is the one table from S3 error codes, HTTP statuses
  and client exceptions to :mod:`dicomvault.tiers.errors`; nothing from
  botocore, aiohttp or s3fs reaches the caller (zarr reads excepted: see
  :meth:`S3Tier.zarr_store`).
- :func:`with_retries` is the one retry loop: capped exponential backoff over
  :data:`RETRYABLE_ERRORS`. botocore's own retries are switched off by
  default so that a dead endpoint reaches this loop after one try, instead of
  after botocore's backoff multiplied by ours.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import aiohttp
import botocore.exceptions
import s3fs
from botocore.parsers import ResponseParserError

from dicomvault.tiers.base import ObjectInfo, ObjectKey, check_key
from dicomvault.tiers.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    TierError,
    TierIntegrityError,
    TierUnavailableError,
)

if TYPE_CHECKING:
    from zarr.abc.store import Store

logger = logging.getLogger(__name__)

T = TypeVar("T")

_READ_CHUNK = 8 << 20

# --- The one table: provider errors to tier errors --------------------------

# S3 error codes. HEAD answers carry no body, so botocore reports their HTTP
# status as the code ("404", "503"); statuses not listed fall back to their
# class in translate_error.
_BY_CODE: dict[str, type[TierError]] = {
    "NoSuchKey": ObjectNotFoundError,
    "NoSuchBucket": ObjectNotFoundError,
    "NotFound": ObjectNotFoundError,
    "404": ObjectNotFoundError,
    "SlowDown": TierUnavailableError,
    "ServiceUnavailable": TierUnavailableError,
    # SeaweedFS also answers InternalError when it has no free volume left,
    # which no retry fixes; the retries end and the error stays "unavailable".
    "InternalError": TierUnavailableError,
    "RequestTimeout": TierUnavailableError,
    # Throttling names used by S3-compatible servers and AWS gateways.
    "Throttling": TierUnavailableError,
    "ThrottlingException": TierUnavailableError,
    "TooManyRequests": TierUnavailableError,
    "RequestLimitExceeded": TierUnavailableError,
}

# Exceptions raised without an S3 answer, checked in order.
_BY_TYPE: tuple[tuple[type[BaseException], type[TierError]], ...] = (
    (FileNotFoundError, ObjectNotFoundError),
    (FileExistsError, ObjectExistsError),
    # Connection refused or reset, DNS failure, connect or read timeout.
    (botocore.exceptions.ConnectionError, TierUnavailableError),
    (botocore.exceptions.HTTPClientError, TierUnavailableError),
    (botocore.exceptions.IncompleteReadError, TierUnavailableError),
    # A throttling answer can arrive as broken XML (fsspec/s3fs issue 484),
    # so an unparsable answer is worth a retry too.
    (ResponseParserError, TierUnavailableError),
    (http.client.IncompleteRead, TierUnavailableError),
    (aiohttp.ClientConnectionError, TierUnavailableError),
    (aiohttp.ClientPayloadError, TierUnavailableError),
    (TimeoutError, TierUnavailableError),
    (ConnectionError, TierUnavailableError),
)

# What a provider call may raise; anything else is a bug and propagates.
_PROVIDER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    ResponseParserError,
    http.client.HTTPException,
    aiohttp.ClientError,
)


def _s3_answer(err: BaseException) -> tuple[str, int]:
    """The S3 error code and HTTP status behind ``err``, if S3 answered.

    s3fs re-raises botocore's ``ClientError`` as an ``OSError`` with the
    original as ``__cause__``; look at both.
    """
    for candidate in (err, err.__cause__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            return code, status
    return "", 0


def translate_error(err: BaseException, *, op: str, key: str, tier: str) -> TierError:
    """Map a provider error to the tier error hierarchy.

    Parameters
    ----------
    err
        What s3fs, botocore or aiohttp raised.
    op
        The operation, for the message (``put``, ``read``, ...).
    key
        The object key (or bucket) the operation was about.
    tier
        The tier's name.
    """
    if isinstance(err, TierError):
        return err
    code, status = _s3_answer(err)
    kind: type[TierError] = TierError
    if code in _BY_CODE:
        kind = _BY_CODE[code]
    elif status == 404:
        kind = ObjectNotFoundError
    elif status == 429 or status >= 500:
        kind = TierUnavailableError
    elif not status:
        for provider_type, tier_type in _BY_TYPE:
            if isinstance(err, provider_type):
                kind = tier_type
                break

    if kind is ObjectNotFoundError:
        return ObjectNotFoundError(f"object {key!r} not found in tier {tier!r}")
    if kind is ObjectExistsError:
        return ObjectExistsError(
            f"object {key!r} already exists; refusing to overwrite"
        )
    detail = (
        f"{code} (HTTP {status}): {err}" if code else f"{type(err).__name__}: {err}"
    )
    if kind is TierUnavailableError:
        return TierUnavailableError(
            f"tier {tier!r} did not complete {op} of {key!r}: {detail}; "
            "the call may be retried"
        )
    return TierError(f"tier {tier!r} refused {op} of {key!r}: {detail}")


# --- The one retry loop ------------------------------------------------------

# Only transient errors are retried. Not found, exists, integrity and every
# other refusal would fail the same way again.
RETRYABLE_ERRORS: tuple[type[TierError], ...] = (TierUnavailableError,)


def with_retries(
    call: Callable[[], T],
    *,
    op: str,
    key: str,
    tier: str,
    attempts: int = 4,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
) -> T:
    """Run ``call``, retrying :data:`RETRYABLE_ERRORS` with capped backoff.

    The waits are ``base_delay * 2**n`` seconds, at most ``max_delay``. Each
    retry is logged at DEBUG; the last error is raised unchanged.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except RETRYABLE_ERRORS as err:
            if attempt == attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            cause = err.__cause__ or err
            logger.debug(
                "event=tier.retry tier=%s op=%s key=%s attempt=%d delay_s=%.2f "
                "error=%s",
                tier,
                op,
                key,
                attempt,
                delay,
                type(cause).__name__,
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


# --- The tier ----------------------------------------------------------------


def _parse_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into bucket and (checked) prefix."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an S3 URL: {url!r}; expected s3://bucket[/prefix]")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise ValueError(f"no bucket in S3 URL {url!r}; expected s3://bucket[/prefix]")
    return bucket, check_key(prefix) if prefix else ""


def _client_options(storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's s3fs options plus this module's defaults."""
    options = dict(storage_options)
    config = dict(options.get("config_kwargs") or {})
    # with_retries is the retry policy; see the module docstring.
    config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
    options["config_kwargs"] = config
    # Another process may add or delete objects at any time: never answer
    # from a cached listing.
    options.setdefault("use_listings_cache", False)
    return options


class S3Tier:
    """Objects in an S3 bucket, under an optional key prefix.

    The bucket is created when missing.

    Parameters
    ----------
    name
        The tier's name in the configuration (``hot``, ``warm``, ...).
    url
        ``s3://bucket`` or ``s3://bucket/prefix``.
    storage_options
        Keyword arguments for ``s3fs.S3FileSystem``: ``key``, ``secret``,
        ``client_kwargs={"endpoint_url": ...}``, and so on.
    attempts
        How many times a call is tried when the backend does not answer.

    Raises
    ------
    TierUnavailableError
        The endpoint did not answer while checking or creating the bucket.
    TierError
        The bucket could not be created (bad name, access denied, ...).
    """

    def __init__(
        self,
        name: str,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        attempts: int = 4,
    ) -> None:
        self.name = name
        self.bucket, self.prefix = _parse_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.attempts = attempts
        self._storage_options = dict(storage_options or {})
        self._fs = s3fs.S3FileSystem(**_client_options(self._storage_options))
        self._ensure_bucket()

    def __repr__(self) -> str:
        return f"S3Tier(name={self.name!r}, url={self.url!r})"

    def path_of(self, key: str) -> str:
        """``bucket/prefix/key`` as s3fs spells it; the key is checked first."""
        key = check_key(key)
        return (
            f"{self.bucket}/{self.prefix}/{key}"
            if self.prefix
            else f"{self.bucket}/{key}"
        )

    def _call(
        self, op: str, key: str, fn: Callable[..., T], *args: Any, **kw: Any
    ) -> T:
        """Call s3fs with errors translated and transient failures retried."""

        def attempt() -> T:
            try:
                return fn(*args, **kw)
            except _PROVIDER_ERRORS as err:
                raise translate_error(err, op=op, key=key, tier=self.name) from err

        return with_retries(
            attempt, op=op, key=key, tier=self.name, attempts=self.attempts
        )

    def _ensure_bucket(self) -> None:
        try:
            self._call(
                "head_bucket",
                self.bucket,
                self._fs.call_s3,
                "head_bucket",
                Bucket=self.bucket,
            )
            return
        except ObjectNotFoundError:
            pass
        try:
            self._call("create_bucket", self.bucket, self._fs.mkdir, self.bucket)
        except ObjectExistsError:
            pass  # created by another process in the meantime
        logger.info("event=bucket.created tier=%s bucket=%s", self.name, self.bucket)

    def _info(self, key: ObjectKey) -> dict[str, Any]:
        """HEAD an object; a "directory" (a prefix of other keys) is absent."""
        info: dict[str, Any] = self._call("head", key, self._fs.info, self.path_of(key))
        if info.get("type") != "file":
            raise ObjectNotFoundError(f"object {key!r} not found in tier {self.name!r}")
        return info

    # -- writes --

    def put_file(
        self, key: ObjectKey, source: Path, *, sha256: str, move: bool = False
    ) -> ObjectInfo:
        """Store a local file; see :meth:`Tier.put_file`.

        With ``move`` the source file is deleted once the upload is verified.
        """
        path = self.path_of(key)
        if not Path(source).is_file():
            raise FileNotFoundError(
                f"source file {str(source)!r} for {key!r} not found"
            )
        self._refuse_existing(key)

        # A retried upload can only overwrite what this call itself sent.
        self._call("put", key, self._fs.put_file, str(source), path)
        info = self._verify(key, path, sha256)

        # Only now is the object safe in the tier; a crash before this line
        # leaves the source in place, so data is duplicated, never lost.
        if move:
            try:
                Path(source).unlink(missing_ok=True)
            except OSError as err:
                logger.warning(
                    "event=source.not_removed tier=%s key=%s source=%s error=%s",
                    self.name,
                    key,
                    source,
                    err,
                )
        return info

    def put_bytes(self, key: ObjectKey, data: bytes, *, sha256: str) -> ObjectInfo:
        """Store bytes; see :meth:`Tier.put_file`."""
        path = self.path_of(key)
        self._refuse_existing(key)

        self._call("put", key, self._fs.pipe_file, path, data)
        return self._verify(key, path, sha256)

    def _refuse_existing(self, key: ObjectKey) -> None:
        # Limitation: this check and the upload that follows are two requests,
        # not one atomic create: two writers racing on one key can both pass
        # the check and the later upload wins. S3's create-only put
        # (If-None-Match: *) would close the gap where the server supports it.
        if self.exists(key):
            raise ObjectExistsError(
                f"object {key!r} already exists; refusing to overwrite"
            )

    def _verify(self, key: ObjectKey, path: str, sha256: str) -> ObjectInfo:
        """Hash the stored object; delete it and raise when it is not ``sha256``."""
        found, size = self._call("verify", key, self._hash_object, path)
        if found == sha256:
            return ObjectInfo(key=key, size=size, sha256=sha256)

        outcome = "the write was undone"
        try:
            self.delete(key)
        except TierError as err:
            # The integrity error is the one to report; the failed removal
            # rides along so that the operator can finish it.
            outcome = f"removing the bad object failed too ({err}); delete it by hand"
        raise TierIntegrityError(
            f"object {key!r} in tier {self.name!r} read back with sha256 "
            f"{found}, expected {sha256}; {outcome}"
        )

    def _hash_object(self, path: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with self._fs.open(path, "rb", block_size=_READ_CHUNK, cache_type="none") as fh:
            while chunk := fh.read(_READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    # -- reads --

    def open_read(self, key: ObjectKey) -> BinaryIO:
        """Open an object for reading; see :meth:`Tier.open_read`."""
        info = self._info(key)
        handle = self._call(
            "open",
            key,
            self._fs.open,
            self.path_of(key),
            "rb",
            block_size=_READ_CHUNK,
            cache_type="readahead",
            size=info["size"],
        )
        return io.BufferedReader(_S3Reader(handle, key, self.name), _READ_CHUNK)

    def read_bytes(self, key: ObjectKey) -> bytes:
        """Read a whole object; see :meth:`Tier.read_bytes`."""
        data: bytes = self._call("read", key, self._fs.cat_file, self.path_of(key))
        return data

    def read_range(self, key: ObjectKey, start: int, length: int) -> bytes:
        """Read a byte range; see :meth:`Tier.read_range`."""
        if start < 0 or length < 0:
            raise ValueError(
                f"byte range of {key!r} must not be negative: {start=}, {length=}"
            )
        path = self.path_of(key)
        if length == 0:
            self._info(key)
            return b""

        def get_range() -> bytes:
            try:
                data: bytes = self._fs.cat_file(path, start=start, end=start + length)
            except OSError as err:
                # S3 answers 416 InvalidRange when the range starts at or past
                # the end; the contract asks for a short (here empty) read.
                if _s3_answer(err)[0] == "InvalidRange":
                    return b""
                raise
            return data

        return self._call("read_range", key, get_range)

    def size(self, key: ObjectKey) -> int:
        """Size of an object; see :meth:`Tier.size`."""
        return int(self._info(key)["size"])

    def exists(self, key: ObjectKey) -> bool:
        """Whether the key holds an object."""
        try:
            self._info(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectKey]:
        """Yield keys under the folder ``prefix``, recursively.

        ``prefix`` names a folder: ``a`` lists ``a/x`` and ``a/b/y`` but not
        ``ab/z``. The listing is read in full before the first key is yielded.
        """
        prefix = prefix.strip("/")
        root = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        base = f"{root}/{check_key(prefix)}" if prefix else root
        found: list[str] = self._call("list", prefix, self._fs.find, base)
        for path in found:
            # Keys ending in "/" are folder markers some tools create.
            if path.startswith(base + "/") and not path.endswith("/"):
                yield ObjectKey(path[len(root) + 1 :])

    def delete(self, key: ObjectKey) -> None:
        """Remove an object; idempotent. See :meth:`Tier.delete`."""
        self._call("delete", key, self._fs.rm_file, self.path_of(key))

    def zarr_store(self, prefix: ObjectKey) -> Store:
        """A read-only zarr ``FsspecStore`` at ``prefix``.

        The store has its own asynchronous s3fs instance built from the
        caller's storage options, with botocore's default retries since zarr
        does not retry. As with any zarr store, a missing chunk or shard reads
        as the fill value; the caller checks its manifest for completeness.

        Limitation: errors raised while zarr reads through this store are
        s3fs's and botocore's own, not tier errors; this module's table and
        retry loop do not apply. A wrapping store would close that gap.
        """
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(
            f"s3://{self.path_of(prefix)}",
            storage_options=self._storage_options,
            read_only=True,
        )


class _S3Reader(io.RawIOBase):
    """A readable stream over an s3fs file that raises only tier errors."""

    def __init__(self, handle: Any, key: str, tier: str) -> None:
        super().__init__()
        self._handle = handle
        self._key = key
        self._tier = tier

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._handle.read(len(view))
        except _PROVIDER_ERRORS as err:
            raise translate_error(
                err, op="read", key=self._key, tier=self._tier
            ) from err
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._handle.close()
        super().close()
