"""Retrieve: stream an instance back byte for byte, or some of its frames.

Every byte is checked before it leaves: literal bytes against the envelope's
SHA-256, frames against their own SHA-256 (and zarr's chunk CRC32C), and the
whole file against the original SHA-256. The last piece of an instance is
held back until the whole-file checksum has matched, so a client never
receives a complete, successful stream of wrong bytes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
import zarr
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicomvault.archive import frames_store
from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import (
    IntegrityError,
    LimitExceededError,
    MissingObjectError,
    NotFoundError,
    TransientError,
    UnsupportedError,
)
from dicomvault.archive.index.catalog import InstanceRecord, VersionRecord
from dicomvault.archive.ingest import frame_description
from dicomvault.archive.manifest import (
    ENVELOPE_NAME,
    FRAMES_NAME,
    MANIFEST_NAME,
    Manifest,
)
from dicomvault.codecs import FrameDescription, decode_frame
from dicomvault.codecs.frames import FrameDecodeError
from dicomvault.tiers import ObjectNotFoundError, Tier, TierUnavailableError, make_key

if TYPE_CHECKING:
    from dicomvault.tiers import ObjectKey

logger = logging.getLogger(__name__)

_ENVELOPE_CHUNK = 1 << 20
READ_RUN_BYTES = 4 << 20
# Instances kept whole (no separable frames) are decoded from the whole file
# in memory; above this size that is refused rather than risked.
MAX_WHOLE_DECODE_BYTES = 512 << 20


@dataclass(frozen=True, slots=True)
class FrameOut:
    """One frame on its way to a client."""

    number: int
    data: bytes
    transfer_syntax_uid: str
    description: FrameDescription | None
    dtype: str
    shape: tuple[int, ...]


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Reader:
    """Reads stored instance versions back from their tiers.

    Parameters
    ----------
    tiers
        Configured tiers by name.
    chunk_bytes
        Largest piece yielded when streaming.
    """

    def __init__(self, tiers: dict[str, Tier], chunk_bytes: int = 1 << 20):
        self.tiers = tiers
        self.chunk_bytes = chunk_bytes
        self._manifests = _LRU(4096)
        self._arrays = _LRU(256)

    def _tier(self, version: VersionRecord) -> Tier:
        return self.tiers[version.tier]

    def manifest(self, version: VersionRecord) -> Manifest:
        """The checked manifest of a version (cached)."""
        cache_key = f"{version.tier}:{version.prefix}"
        cached: Manifest | None = self._manifests.get(cache_key)
        if cached is not None:
            return cached
        key = make_key(version.prefix, MANIFEST_NAME)
        data = self._read(version, key)
        manifest = Manifest.from_bytes(data, f"{key} in tier {version.tier}")
        self._manifests.put(cache_key, manifest)
        return manifest

    def forget(self, version: VersionRecord) -> None:
        """Drop cached state of a version (after it moved or was repaired)."""
        self._manifests.put(f"{version.tier}:{version.prefix}", None)
        self._arrays.put(f"{version.tier}:{version.prefix}", None)

    def _read(self, version: VersionRecord, key: ObjectKey) -> bytes:
        try:
            return self._tier(version).read_bytes(key)  # type: ignore[no-any-return]
        except ObjectNotFoundError:
            raise MissingObjectError(
                f"object {key} of instance version {version.version} is missing from "
                f"tier {version.tier}; run `dicomvault verify` to see the damage"
            ) from None
        except TierUnavailableError as err:
            raise TransientError(f"tier {version.tier} did not answer: {err}") from None

    def _array(self, version: VersionRecord) -> zarr.Array[Any]:
        cache_key = f"{version.tier}:{version.prefix}"
        array: zarr.Array[Any] | None = self._arrays.get(cache_key)
        if array is None:
            store = self._tier(version).zarr_store(
                make_key(version.prefix, FRAMES_NAME)
            )
            try:
                array = zarr.open_array(store=store, mode="r")
            except FileNotFoundError:
                raise MissingObjectError(
                    f"frame array of {version.prefix} is missing "
                    f"from tier {version.tier}"
                ) from None
            self._arrays.put(cache_key, array)
        return array

    # -- frames ------------------------------------------------------------

    def stored_frames(
        self, version: VersionRecord, manifest: Manifest, indices: list[int]
    ) -> Iterator[tuple[int, bytes]]:
        """Yield (0-based index, stored bytes) of frames, each verified."""
        array = self._array(version)
        hashes = manifest.frames["sha256"]
        per_shard = int(manifest.frames.get("per_shard", 1))
        count = max(1, int(manifest.frames.get("count", 1)))
        # Runs are capped in bytes: zarr decodes a run on several threads, and
        # large runs would hold tens of MB per retrieval in flight.
        frame_bytes = max(1, manifest.size // count)
        max_run = max(1, READ_RUN_BYTES // frame_bytes)
        i = 0
        while i < len(indices):
            # Read runs of consecutive frames inside one shard in one call.
            start = indices[i]
            stop = start + 1
            while (
                i + (stop - start) < len(indices)
                and indices[i + (stop - start)] == stop
                and stop // per_shard == start // per_shard
                and stop - start < max_run
            ):
                stop += 1
            try:
                block = list(frames_store.read_block(array, start, stop))
            except Exception as err:  # noqa: BLE001 - zarr wraps store and codec errors
                raise self._frame_error(version, start, err) from None
            for offset, data in enumerate(block):
                index = start + offset
                found = hashlib.sha256(data).hexdigest()
                if found != hashes[index]:
                    lk.log_event(
                        logger,
                        lk.OBJECT_CORRUPT,
                        logging.ERROR,
                        **{
                            lk.TIER: version.tier,
                            lk.KEY: f"{version.prefix}/{FRAMES_NAME}",
                            lk.FRAMES: index + 1,
                            lk.SHA256: found,
                        },
                    )
                    raise IntegrityError(
                        f"frame {index + 1} of {version.prefix} "
                        f"in tier {version.tier} has sha256 {found}, "
                        f"expected {hashes[index]}; run `dicomvault verify`"
                    )
                yield index, data
            i += stop - start

    def _frame_error(
        self, version: VersionRecord, index: int, err: Exception
    ) -> Exception:
        if isinstance(err, TierUnavailableError):
            return TransientError(  # type: ignore[no-any-return]
                f"tier {version.tier} did not answer: {err}"
            )
        if isinstance(err, FileNotFoundError | KeyError):
            return MissingObjectError(  # type: ignore[no-any-return]
                f"frame {index + 1} of {version.prefix} is missing "
                f"from tier {version.tier}"
            )
        return IntegrityError(  # type: ignore[no-any-return]
            f"frame {index + 1} of {version.prefix} in tier {version.tier} cannot be "
            f"read: {type(err).__name__}: {err}"
        )

    def frames(
        self, record: InstanceRecord, version_id: str, numbers: list[int], decode: bool
    ) -> Iterator[FrameOut]:
        """Yield the requested frames (1-based numbers; empty means all).

        Raises
        ------
        NotFoundError
            A frame number outside 1..number of frames.
        UnsupportedError
            The instance has no pixel data, or no decoder for its frames.
        """
        version = self.version(record, version_id)
        manifest = self.manifest(version)
        frames = manifest.frames
        if manifest.pixel is None:
            raise UnsupportedError(
                f"instance {record.sop_instance_uid} has no pixel data"
                + (f" ({frames.get('why')})" if frames.get("why") else "")
            )
        count = int(manifest.pixel["number_of_frames"])
        numbers = numbers or list(range(1, count + 1))
        bad = [n for n in numbers if not 1 <= n <= count]
        if bad:
            raise NotFoundError(
                f"instance {record.sop_instance_uid} has frames 1-{count}; "
                f"frame {bad[0]} does not exist"
            )
        desc = frame_description(manifest.pixel)
        if frames["kind"] == "whole":
            yield from self._whole_frames(version, manifest, desc, numbers)
            return
        ts = manifest.transfer_syntax_uid
        native = frames["kind"] == "native"
        for index, data in self.stored_frames(
            version, manifest, [n - 1 for n in numbers]
        ):
            if decode:
                try:
                    arr = decode_frame(
                        data, desc, ExplicitVRLittleEndian if native else ts
                    )
                except FrameDecodeError as err:
                    raise UnsupportedError(str(err)) from None
                arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
                yield FrameOut(
                    index + 1,
                    arr.tobytes(),
                    ExplicitVRLittleEndian,
                    desc,
                    arr.dtype.str,
                    tuple(arr.shape),
                )
            elif native:
                yield FrameOut(
                    index + 1,
                    data,
                    ExplicitVRLittleEndian,
                    desc,
                    str(frames["dtype"]),
                    tuple(frames["shape"]),
                )
            else:
                yield FrameOut(index + 1, data, ts, desc, "", ())

    def _whole_frames(
        self,
        version: VersionRecord,
        manifest: Manifest,
        desc: FrameDescription,
        numbers: list[int],
    ) -> Iterator[FrameOut]:
        # Frames that are not separable (1-bit, deflated data sets) are
        # decoded from the whole file; they are small in practice.
        if manifest.size > MAX_WHOLE_DECODE_BYTES:
            raise LimitExceededError(
                f"instance {manifest.sop_instance_uid} keeps its frames inside the "
                f"whole file ({manifest.frames.get('why')}), "
                f"and at {manifest.size} bytes "
                f"it is above the {MAX_WHOLE_DECODE_BYTES} byte limit for decoding it"
            )
        import io

        data = b"".join(
            self.stream(
                InstanceRecord(
                    manifest.sop_instance_uid,
                    manifest.study_uid,
                    manifest.series_uid,
                    version.version,
                    {version.version: version},
                ),
                "",
            )
        )
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = UID(manifest.transfer_syntax_uid)
        for number in numbers:
            try:
                arr = np.asarray(pixel_array(ds, index=number - 1))
            except Exception as err:  # noqa: BLE001
                raise UnsupportedError(
                    f"cannot decode frame {number} "
                    f"of {manifest.sop_instance_uid}: {err}"
                ) from None
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            yield FrameOut(
                number,
                arr.tobytes(),
                ExplicitVRLittleEndian,
                desc,
                arr.dtype.str,
                tuple(arr.shape),
            )

    # -- whole instance ------------------------------------------------------

    @staticmethod
    def version(record: InstanceRecord, version_id: str) -> VersionRecord:
        """The requested version of a record (the current one for "")."""
        if not version_id:
            return record.current_version
        try:
            return record.versions[version_id]
        except KeyError:
            raise NotFoundError(
                f"instance {record.sop_instance_uid} has no version {version_id!r}; "
                f"stored versions: {', '.join(sorted(record.versions))}"
            ) from None

    def stream(self, record: InstanceRecord, version_id: str) -> Iterator[bytes]:
        """Yield the instance's original bytes, verified (see module doc)."""
        version = self.version(record, version_id)
        manifest = self.manifest(version)
        return self._verified(self._pieces(version, manifest), manifest, version)

    def _pieces(self, version: VersionRecord, manifest: Manifest) -> Iterator[bytes]:
        tier = self._tier(version)
        env_key = make_key(version.prefix, ENVELOPE_NAME)
        env_meta = next(o for o in manifest.objects if o["key"] == ENVELOPE_NAME)
        env_hash = hashlib.sha256()
        swap = int(manifest.frames.get("swap", 0))
        dtype = np.dtype(manifest.frames["dtype"]) if swap else None
        frame_indices = sorted({int(s[1]) for s in manifest.segments if s[0] == "F"})
        frame_iter = (
            self.stored_frames(version, manifest, frame_indices)
            if frame_indices
            else iter(())
        )
        current: tuple[int, bytes] | None = None
        try:
            envelope = tier.open_read(env_key)
        except ObjectNotFoundError:
            raise MissingObjectError(
                f"object {env_key} is missing from tier {version.tier}; "
                "run `dicomvault verify`"
            ) from None
        with envelope:
            for seg in manifest.segments:
                if seg[0] == "L":
                    remaining = int(seg[1])
                    while remaining:
                        chunk = envelope.read(
                            min(remaining, _ENVELOPE_CHUNK, self.chunk_bytes)
                        )
                        if not chunk:
                            raise IntegrityError(
                                f"object {env_key} in tier {version.tier} "
                                "is shorter than recorded "
                                f"({env_meta['size']} bytes)"
                            )
                        env_hash.update(chunk)
                        remaining -= len(chunk)
                        yield chunk
                    continue
                index, start, length = int(seg[1]), int(seg[2]), int(seg[3])
                while current is None or current[0] != index:
                    current = next(frame_iter)
                data = current[1]
                if swap and dtype is not None:
                    data = np.frombuffer(data, dtype=dtype).byteswap().tobytes()
                piece = memoryview(data)[start : start + length]
                for off in range(0, len(piece), self.chunk_bytes):
                    yield bytes(piece[off : off + self.chunk_bytes])
            if envelope.read(1) or env_hash.hexdigest() != env_meta["sha256"]:
                raise IntegrityError(
                    f"object {env_key} in tier {version.tier} has sha256 "
                    f"{env_hash.hexdigest()}, expected {env_meta['sha256']}; "
                    "run `dicomvault verify`"
                )

    def _verified(
        self, pieces: Iterator[bytes], manifest: Manifest, version: VersionRecord
    ) -> Iterator[bytes]:
        digest = hashlib.sha256()
        held: bytes | None = None
        for piece in pieces:
            digest.update(piece)
            if held is not None:
                yield held
            held = piece
        found = digest.hexdigest()
        if found != manifest.sha256:
            raise IntegrityError(
                f"instance {manifest.sop_instance_uid} version {version.version} "
                f"in tier {version.tier} rebuilds to sha256 {found}, "
                f"expected {manifest.sha256}"
            )
        if held is not None:
            yield held
