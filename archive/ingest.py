"""Ingest: an uploaded file becomes a durable, indexed instance version.

The order is what makes a crash harmless:

1. dissect the spooled upload (nothing written yet);
2. stage frames, envelope and manifest in a local folder;
3. record an intent in the catalog (durable);
4. put every object in the tier (each durable and verified on return), the
   manifest last;
5. commit the version in the catalog (visible from here on), which clears
   the intent, then index its metadata in DuckDB;
6. answer the client.

A crash before 5 leaves an intent: on restart the objects are removed, or,
if the manifest made it, the version is committed (it was complete). A
crash after 5 is caught up from the catalog's change log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from dicomvault.archive import frames_store
from dicomvault.archive import logkeys as lk
from dicomvault.archive.dissect import Dissection, dissect
from dicomvault.archive.errors import ConflictError, InvalidInputError
from dicomvault.archive.index.catalog import VersionRecord
from dicomvault.archive.manifest import (
    ENVELOPE_NAME,
    FRAMES_NAME,
    MANIFEST_NAME,
    Manifest,
    instance_prefix,
)
from dicomvault.archive.metadata_json import dataset_to_json
from dicomvault.codecs import FrameDescription, native_dtype
from dicomvault.codecs.frames import native_shape
from dicomvault.tiers import ObjectExistsError, ObjectKey, Tier, make_key
from dicomvault.tiers.local import hash_file

if TYPE_CHECKING:
    from dicomvault.archive.index import Index

logger = logging.getLogger(__name__)

_READ_CHUNK = 4 << 20


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What happened to one upload."""

    outcome: str  # "stored", "duplicate", "stored_new_version"
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    sha256: str
    size: int
    version: str
    reason: str = ""


def frame_description(pixel: dict[str, object] | object) -> FrameDescription:
    """The codec-level description of a manifest's or dissection's pixels."""
    data: dict[str, Any] = (
        pixel if isinstance(pixel, dict) else pixel.to_dict()  # type: ignore[attr-defined]
    )
    return FrameDescription(
        rows=int(data["rows"]),
        columns=int(data["columns"]),
        samples_per_pixel=int(data["samples_per_pixel"]),
        bits_allocated=int(data["bits_allocated"]),
        bits_stored=int(data["bits_stored"]),
        high_bit=int(data["high_bit"]),
        pixel_representation=int(data["pixel_representation"]),
        photometric_interpretation=str(data["photometric_interpretation"]),
        planar_configuration=int(data["planar_configuration"]),
        pixel_keyword=str(data["pixel_keyword"]),
    )


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise InvalidInputError(
            f"upload changed while being read ({len(data)} of {n} bytes)"
        )
    return data


class Ingestor:
    """Turns spooled uploads into stored instance versions.

    Parameters
    ----------
    tiers
        Configured tiers by name.
    index
        The catalog and metadata index.
    spool_dir
        Local folder for staging; on the same file system as a local tier,
        staged files are renamed into place instead of copied.
    default_tier, on_conflict, shard_bytes, zstd_levels
        From the settings ``storage.*`` and ``ingest.*``.
    """

    def __init__(
        self,
        tiers: dict[str, Tier],
        index: Index,
        spool_dir: Path,
        *,
        default_tier: str,
        on_conflict: str,
        shard_bytes: int,
        zstd_levels: dict[str, int],
    ):
        self.tiers = tiers
        self.index = index
        self.spool_dir = spool_dir
        self.default_tier = default_tier
        self.on_conflict = on_conflict
        self.shard_bytes = shard_bytes
        self.zstd_levels = zstd_levels
        self._uid_locks = [threading.Lock() for _ in range(64)]

    def _lock_for(self, sop_uid: str) -> threading.Lock:
        return self._uid_locks[hash(sop_uid) % len(self._uid_locks)]

    def store(
        self, upload: Path, sha256: str, size: int, calling_application: str = ""
    ) -> StoreOutcome:
        """Store one spooled upload; durable and indexed when it returns.

        Parameters
        ----------
        upload
            The uploaded file in the spool folder (left in place).
        sha256, size
            Checksum and size of the upload, computed while it arrived.

        Raises
        ------
        InvalidInputError
            Not DICOM, malformed, or with unsafe UIDs; nothing is stored.
        ConflictError
            The UID is stored with other bytes and versions are not kept.
        """
        dis = dissect(upload)
        with self._lock_for(dis.sop_instance_uid):
            existing = self.index.catalog.get(dis.sop_instance_uid)
            new_version = False
            if existing is not None:
                for stored in existing.versions.values():
                    if stored.sha256 == sha256:
                        return StoreOutcome(
                            "duplicate",
                            dis.sop_instance_uid,
                            existing.study_uid,
                            existing.series_uid,
                            sha256,
                            size,
                            stored.version,
                            f"identical to stored version {stored.version}",
                        )
                if self.on_conflict != "version":
                    current = existing.current_version
                    raise ConflictError(
                        f"SOP Instance UID {dis.sop_instance_uid} is already stored "
                        f"with sha256 {current.sha256}; "
                        f"this upload has sha256 {sha256}. "
                        'Set ingest.on_conflict = "version" to keep both.'
                    )
                new_version = True
            version = sha256[:16]
            self._write(dis, upload, sha256, size, version, calling_application)
        outcome = "stored_new_version" if new_version else "stored"
        return StoreOutcome(
            outcome,
            dis.sop_instance_uid,
            dis.study_uid,
            dis.series_uid,
            sha256,
            size,
            version,
        )

    def _write(
        self,
        dis: Dissection,
        upload: Path,
        sha256: str,
        size: int,
        version: str,
        calling_application: str,
    ) -> None:
        tier_name = self.default_tier
        tier = self.tiers[tier_name]
        prefix = instance_prefix(
            dis.study_uid, dis.series_uid, dis.sop_instance_uid, version
        )
        op_id = uuid.uuid4().hex
        stage = self.spool_dir / f"stage-{op_id}"
        stage.mkdir(parents=True)
        written: list[ObjectKey] = []
        try:
            manifest = self._stage(
                dis,
                upload,
                stage,
                sha256,
                size,
                version,
                calling_application,
                self.zstd_levels.get(tier_name, 3),
            )

            # The intent is durable before the first object lands, so a crash
            # from here on is found and resolved at the next start.
            self.index.catalog.begin_intent(
                op_id,
                {
                    "tier": tier_name,
                    "prefix": prefix,
                    "sop_instance_uid": dis.sop_instance_uid,
                },
            )
            for obj in manifest.objects:
                key = make_key(prefix, obj["key"])
                self._put(tier, key, stage / obj["key"], obj["sha256"])
                written.append(key)
            manifest_bytes = manifest.to_bytes()
            manifest_key = make_key(prefix, MANIFEST_NAME)
            tier.put_bytes(
                manifest_key,
                manifest_bytes,
                sha256=hashlib.sha256(manifest_bytes).hexdigest(),
            )
            written.append(manifest_key)

            record = VersionRecord(
                version=version,
                tier=tier_name,
                prefix=prefix,
                sha256=sha256,
                size=size,
                frames=int(manifest.frames.get("count", 0)),
                transfer_syntax_uid=dis.transfer_syntax_uid,
                sop_class_uid=dis.sop_class_uid,
                stored_at=manifest.stored_at,
            )
            seq = self.index.commit(manifest, record, op_id)
        except BaseException:
            self._undo(tier, written, op_id)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)

        self.index.metadata.flush(seq)
        lk.log_event(
            logger,
            lk.INSTANCE_STORED,
            **{
                lk.STUDY_UID: dis.study_uid,
                lk.SERIES_UID: dis.series_uid,
                lk.SOP_INSTANCE_UID: dis.sop_instance_uid,
                lk.VERSION: version,
                lk.TIER: tier_name,
                lk.BYTES: size,
                lk.SHA256: sha256,
                lk.OBJECTS: len(written),
                lk.FRAMES: manifest.frames.get("count", 0),
                lk.OP_ID: op_id,
            },
        )

    def _put(self, tier: Tier, key: ObjectKey, source: Path, sha256: str) -> None:
        try:
            tier.put_file(key, source, sha256=sha256, move=True)
        except ObjectExistsError:
            # Content-addressed keys: an object already there with the same
            # checksum is the same object (an earlier attempt's); keep it.
            found = hashlib.sha256(tier.read_bytes(key)).hexdigest()
            if found != sha256:
                raise

    def _undo(self, tier: Tier, written: list[ObjectKey], op_id: str) -> None:
        # Manifest first (it was written last): once it is gone nothing
        # claims the remaining objects are an instance.
        try:
            for key in reversed(written):
                tier.delete(key)
            self.index.catalog.end_intent(op_id)
        except Exception:  # noqa: BLE001 - the intent stays for recovery
            logger.exception(
                "cleanup of a failed write left objects; recovery will remove them"
            )
            return
        if written:
            lk.log_event(
                logger,
                lk.WRITE_ROLLED_BACK,
                **{lk.OP_ID: op_id, lk.OBJECTS: len(written)},
            )

    # -- staging ----------------------------------------------------------

    def _stage(
        self,
        dis: Dissection,
        upload: Path,
        stage: Path,
        sha256: str,
        size: int,
        version: str,
        calling_application: str,
        zstd_level: int,
    ) -> Manifest:
        with open(upload, "rb") as src:
            frames = self._stage_frames(dis, src, stage / FRAMES_NAME, zstd_level)
            swap = int(frames.get("swap", 0))
            self._stage_envelope(dis, src, stage / ENVELOPE_NAME)
        objects = []
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            rel = path.relative_to(stage).as_posix()
            objects.append(
                {"key": rel, "size": path.stat().st_size, "sha256": hash_file(path)}
            )
        segments: list[list[object]] = []
        for seg in dis.segments:
            if seg[0] == "L":
                segments.append(["L", seg[2] - seg[1]])
            else:
                segments.append(["F", seg[1], seg[2], seg[3]])
        frames["swap"] = swap
        return Manifest(
            sop_instance_uid=dis.sop_instance_uid,
            sop_class_uid=dis.sop_class_uid,
            study_uid=dis.study_uid,
            series_uid=dis.series_uid,
            version=version,
            sha256=sha256,
            size=size,
            transfer_syntax_uid=dis.transfer_syntax_uid,
            transfer_syntax_inferred=dis.transfer_syntax_inferred,
            stored_at=dt.datetime.now(dt.UTC).isoformat(),
            calling_application=calling_application,
            frames=frames,
            pixel=dis.pixel.to_dict() if dis.pixel else None,
            segments=segments,
            objects=objects,
            metadata=dataset_to_json(dis.dataset),
        )

    def _stage_envelope(self, dis: Dissection, src: BinaryIO, path: Path) -> None:
        with open(path, "wb") as out:
            for seg in dis.segments:
                if seg[0] != "L":
                    continue
                src.seek(seg[1])
                remaining = seg[2] - seg[1]
                while remaining:
                    chunk = _read_exact(src, min(remaining, _READ_CHUNK))
                    out.write(chunk)
                    remaining -= len(chunk)

    def _stage_frames(
        self, dis: Dissection, src: BinaryIO, path: Path, zstd_level: int
    ) -> dict[str, Any]:
        plan = dis.plan
        if plan.kind == "whole":
            return {"kind": "whole", "count": 0, "why": plan.why_whole}
        assert dis.pixel is not None
        hashes: list[str] = []
        if plan.kind == "native":
            desc = frame_description(dis.pixel)
            shape = native_shape(desc)
            dtype = native_dtype(desc) if len(shape) > 1 else np.dtype("u1")
            swap = dtype.itemsize if plan.swap and dtype.itemsize > 1 else 0
            per_shard = frames_store.shard_frames(
                plan.frame_nbytes, plan.count, self.shard_bytes
            )
            array = frames_store.create_native(
                path, plan.count, shape, dtype, per_shard, zstd_level
            )
            for start in range(0, plan.count, per_shard):
                n = min(per_shard, plan.count - start)
                src.seek(plan.value_offset + start * plan.frame_nbytes)
                raw = _read_exact(src, n * plan.frame_nbytes)
                source_dtype = dtype.newbyteorder(">") if swap else dtype
                block = np.frombuffer(raw, dtype=source_dtype).astype(dtype, copy=False)
                block = block.reshape(n, *shape)
                for frame in block:
                    hashes.append(hashlib.sha256(frame.data).hexdigest())
                frames_store.write_block(array, start, block)
            return {
                "kind": "native",
                "count": plan.count,
                "dtype": dtype.str,
                "shape": list(shape),
                "per_shard": per_shard,
                "swap": swap,
                "array": FRAMES_NAME,
                "sha256": hashes,
            }

        total = sum(length for frame in plan.frames for _off, length in frame)
        per_shard = frames_store.shard_frames(
            total // plan.count, plan.count, self.shard_bytes
        )
        array = frames_store.create_bitstreams(path, plan.count, per_shard)
        for start in range(0, plan.count, per_shard):
            bitstreams: list[bytes] = []
            for frame in plan.frames[start : start + per_shard]:
                parts = []
                for offset, length in frame:
                    src.seek(offset)
                    parts.append(_read_exact(src, length))
                data = b"".join(parts)
                hashes.append(hashlib.sha256(data).hexdigest())
                bitstreams.append(data)
            frames_store.write_block(array, start, bitstreams)
        return {
            "kind": "encapsulated",
            "count": plan.count,
            "per_shard": per_shard,
            "array": FRAMES_NAME,
            "sha256": hashes,
            "swap": 0,
        }
