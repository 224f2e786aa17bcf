"""Moving a study between tiers, one study at a time, without losing a copy.

The order makes a crash at any step harmless:

1. record a move intent naming every instance version and its source tier
   (durable, phase ``copying``);
2. copy every object of every version to the target tier, re-writing the
   native frame array when the target's zstd level differs (compressed
   bitstreams are copied as they are), the new manifest last;
3. re-hash every object in the target against the target's manifest;
4. switch the catalog to the target in one LMDB transaction that also marks
   the intent ``switched`` and appends ``study.moved`` to the change log;
5. delete the source objects (manifest first), then forget the intent.

A crash before 4 leaves the source authoritative: recovery removes what
reached the target. A crash after 4 leaves the target authoritative:
recovery removes what is left in the source. Either way exactly one complete
copy remains, and deleting only after the switch means a crash leaves extra
data, never missing data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from dicomvault.archive import frames_store
from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import IntegrityError, InvalidInputError, NotFoundError
from dicomvault.archive.index.moves import PHASE_COPYING, MoveJournal
from dicomvault.archive.manifest import FRAMES_NAME, MANIFEST_NAME, Manifest
from dicomvault.tiers import (
    ObjectExistsError,
    ObjectKey,
    Tier,
    make_key,
)
from dicomvault.tiers.local import hash_file

if TYPE_CHECKING:
    from dicomvault.archive.index import Index
    from dicomvault.archive.retrieve import Reader

logger = logging.getLogger(__name__)

_COPY_CHUNK = 4 << 20
PAUSE_STEPS = ("copying", "copied", "switched", "deleting")


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """What one study move did."""

    study_uid: str
    to_tier: str
    from_tiers: tuple[str, ...]
    versions: int
    objects: int
    bytes: int
    op_id: str


@dataclass(frozen=True, slots=True)
class TierUsage:
    """What one tier holds, by the catalog."""

    tier: str
    studies: int
    instances: int
    bytes: int


@dataclass(slots=True)
class TierStatus:
    """Per-tier figures and the moves not (yet) done."""

    tiers: list[TierUsage]
    pending_moves: list[dict[str, Any]]
    failed_moves: list[dict[str, Any]] = field(default_factory=list)


def _zstd_level(metadata: Any) -> int | None:
    """The zstd level in a zarr.json document (searched at any depth)."""
    if isinstance(metadata, dict):
        if metadata.get("name") == "zstd":
            return int(metadata.get("configuration", {}).get("level", 0))
        children: list[Any] = list(metadata.values())
    elif isinstance(metadata, list):
        children = metadata
    else:
        return None
    for child in children:
        found = _zstd_level(child)
        if found is not None:
            return found
    return None


def _read_manifest(tier: Tier, prefix: str) -> Manifest:
    key = make_key(prefix, MANIFEST_NAME)
    return Manifest.from_bytes(tier.read_bytes(key), f"{key} in tier {tier.name}")


def _hash_object(tier: Tier, key: ObjectKey) -> str:
    digest = hashlib.sha256()
    with tier.open_read(key) as fh:
        while chunk := fh.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _delete_prefix(tier: Tier, prefix: str) -> int:
    # The manifest goes first: once it is gone nothing claims the remaining
    # objects are a complete instance, so `verify --repair` may remove them.
    keys = sorted(tier.list(prefix), key=lambda k: not k.endswith(MANIFEST_NAME))
    for key in keys:
        tier.delete(key)
    return len(keys)


class Mover:
    """Moves studies between tiers and resolves moves a crash interrupted.

    Parameters
    ----------
    tiers
        Every configured tier, source and target alike, by name.
    index
        The index whose catalog is switched and whose metadata follows.
    spool_dir
        Local folder for staging copies and re-encoded frame arrays.
    zstd_levels
        Each tier's zstd level for native frames.
    reader
        The archive's reader, whose caches are dropped for moved versions.
    pause_at
        The ``debug.pause_move_at`` step, or "" (crash tests only).
    """

    def __init__(
        self,
        tiers: dict[str, Tier],
        index: Index,
        spool_dir: Path,
        zstd_levels: dict[str, int],
        reader: Reader,
        pause_at: str = "",
    ):
        self.tiers = tiers
        self.index = index
        self.spool_dir = spool_dir
        self.zstd_levels = zstd_levels
        self.reader = reader
        self.pause_at = pause_at
        self.journal = MoveJournal(index.catalog)
        self.failed: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # -- one move ---------------------------------------------------------

    def move_study(self, study_uid: str, target: str) -> MoveOutcome:
        """Move every instance version of a study to tier ``target``.

        Changes stored data: the study's objects are copied to ``target``,
        verified there, the catalog switched, and the source objects deleted.
        Versions already in ``target`` stay as they are. Durable when it
        returns; a crash at any point is resolved by :meth:`recover`.

        Raises
        ------
        InvalidInputError
            ``target`` is not a configured tier.
        NotFoundError
            No instance of the study is stored.
        IntegrityError
            A source object or a copy does not match its checksum; the copies
            are removed and the study stays where it was.
        """
        if target not in self.tiers:
            raise InvalidInputError(
                f"cannot move study {study_uid}: unknown tier {target!r}; "
                f"configured tiers are {', '.join(self.tiers)}"
            )
        with self._lock:
            try:
                return self._move(study_uid, target)
            except Exception as err:
                self.failed.append(
                    {"study_uid": study_uid, "to_tier": target, "error": str(err)}
                )
                lk.log_event(
                    logger,
                    lk.MOVE_FAILED,
                    logging.ERROR,
                    **{
                        lk.STUDY_UID: study_uid,
                        lk.TO_TIER: target,
                        lk.ERROR: type(err).__name__,
                    },
                )
                raise

    def _move(self, study_uid: str, target: str) -> MoveOutcome:
        catalog = self.index.catalog
        members = catalog.study_members(study_uid)
        if not members:
            raise NotFoundError(f"no study with Study Instance UID {study_uid}")

        # Plan: every version not yet in the target, with where it is now.
        plan: dict[str, dict[str, dict[str, str]]] = {}
        for _series, sop_uid in members:
            record = catalog.get(sop_uid)
            if record is None:
                continue
            for version in record.versions.values():
                if version.tier != target:
                    plan.setdefault(sop_uid, {})[version.version] = {
                        "source": version.tier,
                        "prefix": version.prefix,
                    }
        op_id = uuid.uuid4().hex
        if not plan:
            return MoveOutcome(study_uid, target, (), 0, 0, 0, op_id)
        self.journal.begin(
            op_id, {"study_uid": study_uid, "target": target, "versions": plan}
        )

        # Copy and verify; on any failure the copies go and the source stays.
        objects = size = 0
        stage = self.spool_dir / f"move-{op_id}"
        try:
            for versions in plan.values():
                for entry in versions.values():
                    n, b = self._copy_version(
                        self.tiers[entry["source"]],
                        self.tiers[target],
                        entry["prefix"],
                        stage,
                        study_uid,
                        op_id,
                    )
                    objects, size = objects + n, size + b
        except BaseException:
            self._remove_copies(plan, target)
            self.journal.end(op_id)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        self._checkpoint("copied", study_uid, op_id)

        # Switch: from here on the target is the copy that counts.
        from_tiers = tuple(
            sorted({e["source"] for v in plan.values() for e in v.values()})
        )
        change = {
            "type": lk.STUDY_MOVED,
            "study_uid": study_uid,
            "from_tiers": list(from_tiers),
            "to_tier": target,
            # Each moved version, so a replica can follow without the catalog.
            "versions": [
                {"from_tier": e["source"], "prefix": e["prefix"]}
                for v in plan.values()
                for e in v.values()
            ],
            "objects": objects,
            "bytes": size,
        }
        with self.index._order:
            seq, records = self.journal.switch(op_id, target, change)
            for record in records:
                current = record.current_version
                if current.tier == target:
                    manifest = _read_manifest(self.tiers[target], current.prefix)
                    self.index.metadata.enqueue(manifest, target, seq)
        self.index.metadata.flush(seq)
        self._checkpoint("switched", study_uid, op_id)

        # Delete the source copies, then forget the intent.
        first = True
        by_sop = {record.sop_instance_uid: record for record in records}
        for sop_uid, versions in plan.items():
            for version_id, entry in versions.items():
                record = by_sop.get(sop_uid)
                if record is not None and version_id in record.versions:
                    moved = record.versions[version_id]
                    self.reader.forget(dataclasses.replace(moved, tier=entry["source"]))
                _delete_prefix(self.tiers[entry["source"]], entry["prefix"])
                if first:
                    self._checkpoint("deleting", study_uid, op_id)
                    first = False
        self.journal.end(op_id)

        outcome = MoveOutcome(
            study_uid,
            target,
            from_tiers,
            sum(len(v) for v in plan.values()),
            objects,
            size,
            op_id,
        )
        lk.log_event(
            logger,
            lk.STUDY_MOVED,
            **{
                lk.STUDY_UID: study_uid,
                lk.FROM_TIER: ",".join(from_tiers),
                lk.TO_TIER: target,
                lk.COUNT: outcome.versions,
                lk.OBJECTS: objects,
                lk.BYTES: size,
                lk.OP_ID: op_id,
            },
        )
        return outcome

    def _copy_version(
        self,
        source: Tier,
        target: Tier,
        prefix: str,
        stage: Path,
        study_uid: str,
        op_id: str,
    ) -> tuple[int, int]:
        stage = stage / uuid.uuid4().hex
        manifest = _read_manifest(source, prefix)
        level = self.zstd_levels.get(target.name, 3)
        reencode = False
        if manifest.frames.get("kind") == "native":
            meta_key = make_key(prefix, FRAMES_NAME, "zarr.json")
            reencode = _zstd_level(json.loads(source.read_bytes(meta_key))) != level

        # Objects as they are, except a native frame array to re-encode.
        objects: list[dict[str, Any]] = []
        staged: dict[str, Path] = {}
        if reencode:
            staged = self._reencode(source, prefix, manifest, stage, level)
        for obj in manifest.objects:
            if reencode and obj["key"].startswith(FRAMES_NAME + "/"):
                continue
            path = stage / "copy" / obj["key"]
            self._download(source, make_key(prefix, obj["key"]), path, obj["sha256"])
            staged[obj["key"]] = path
        for rel, path in sorted(staged.items()):
            objects.append(
                {"key": rel, "size": path.stat().st_size, "sha256": hash_file(path)}
            )
        for obj in objects:
            self._put(target, make_key(prefix, obj["key"]), staged[obj["key"]], obj)
            self._checkpoint("copying", study_uid, op_id)

        # Verify every copy against the target's manifest, then commit it.
        for obj in objects:
            key = make_key(prefix, obj["key"])
            found = _hash_object(target, key)
            if found != obj["sha256"]:
                raise IntegrityError(
                    f"copy of {key} in tier {target.name} has sha256 {found}, "
                    f"expected {obj['sha256']}; the move was undone, retry it"
                )
        new_manifest = dataclasses.replace(manifest, objects=objects)
        data = new_manifest.to_bytes()
        target.put_bytes(
            make_key(prefix, MANIFEST_NAME),
            data,
            sha256=hashlib.sha256(data).hexdigest(),
        )
        return len(objects) + 1, sum(int(o["size"]) for o in objects) + len(data)

    def _reencode(
        self, source: Tier, prefix: str, manifest: Manifest, stage: Path, level: int
    ) -> dict[str, Path]:
        frames = manifest.frames
        array_dir = stage / "reencode" / FRAMES_NAME
        src = zarr.open_array(
            store=source.zarr_store(make_key(prefix, FRAMES_NAME)), mode="r"
        )
        count, per_shard = int(frames["count"]), int(frames["per_shard"])
        dst = frames_store.create_native(
            array_dir,
            count,
            tuple(frames["shape"]),
            np.dtype(frames["dtype"]),
            per_shard,
            level,
        )
        for start in range(0, count, per_shard):
            block = np.asarray(src[start : start + per_shard])
            for i, frame in enumerate(block):
                found = hashlib.sha256(frame.tobytes()).hexdigest()
                expected = frames["sha256"][start + i]
                if found != expected:
                    raise IntegrityError(
                        f"frame {start + i + 1} of {prefix} in tier {source.name} "
                        f"has sha256 {found}, expected {expected}; run "
                        "`dicomvault verify` before moving this study"
                    )
            frames_store.write_block(dst, start, block)
        return {
            f"{FRAMES_NAME}/{p.relative_to(array_dir).as_posix()}": p
            for p in array_dir.rglob("*")
            if p.is_file()
        }

    def _download(self, tier: Tier, key: ObjectKey, path: Path, sha256: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tier.open_read(key) as src, open(path, "wb") as out:
            while chunk := src.read(_COPY_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise IntegrityError(
                f"object {key} in tier {tier.name} has sha256 {digest.hexdigest()}, "
                f"expected {sha256}; the study was not moved; run `dicomvault verify`"
            )

    def _put(self, tier: Tier, key: ObjectKey, path: Path, obj: dict[str, Any]) -> None:
        try:
            tier.put_file(key, path, sha256=obj["sha256"], move=True)
        except ObjectExistsError:
            # A leftover of an earlier attempt with the same content is the
            # same object; anything else is refused.
            if _hash_object(tier, key) != obj["sha256"]:
                raise

    def _remove_copies(
        self, plan: dict[str, dict[str, dict[str, str]]], target: str
    ) -> None:
        for versions in plan.values():
            for entry in versions.values():
                _delete_prefix(self.tiers[target], entry["prefix"])

    def _checkpoint(self, step: str, study_uid: str, op_id: str) -> None:
        if self.pause_at != step:
            return
        lk.log_event(
            logger,
            lk.MOVE_PAUSED,
            logging.WARNING,
            **{lk.STUDY_UID: study_uid, lk.STEP: step, lk.OP_ID: op_id},
        )
        # Crash tests kill the process here; nothing else may proceed.
        threading.Event().wait()

    # -- recovery and status ------------------------------------------------

    def recover(self) -> int:
        """Resolve moves a crash interrupted; return how many.

        Changes stored data: a move not yet switched loses its copies in the
        target; a switched one loses what is left in its source tiers.
        """
        moves = self.journal.open_moves()
        for op_id, intent in moves.items():
            target = intent["target"]
            removed = 0
            for versions in intent["versions"].values():
                for entry in versions.values():
                    tier = target if intent["phase"] == PHASE_COPYING else None
                    tier_name = tier or entry["source"]
                    if tier_name in self.tiers:
                        removed += _delete_prefix(
                            self.tiers[tier_name], entry["prefix"]
                        )
            self.journal.end(op_id)
            event = (
                lk.MOVE_ROLLED_BACK
                if intent["phase"] == PHASE_COPYING
                else lk.MOVE_ROLLED_FORWARD
            )
            lk.log_event(
                logger,
                event,
                **{
                    lk.STUDY_UID: intent["study_uid"],
                    lk.TO_TIER: target,
                    lk.OBJECTS: removed,
                    lk.OP_ID: op_id,
                },
            )
        return len(moves)

    def status(self) -> TierStatus:
        """Per tier: studies, instance versions and bytes; open and failed moves."""
        studies: dict[str, set[str]] = {name: set() for name in self.tiers}
        instances = dict.fromkeys(self.tiers, 0)
        sizes = dict.fromkeys(self.tiers, 0)
        for record in self.index.catalog.iter_records():
            for version in record.versions.values():
                studies.setdefault(version.tier, set()).add(record.study_uid)
                instances[version.tier] = instances.get(version.tier, 0) + 1
                sizes[version.tier] = sizes.get(version.tier, 0) + version.size
        usage = [
            TierUsage(name, len(studies[name]), instances[name], sizes[name])
            for name in studies
        ]
        pending = [
            {"op_id": op_id, **{k: v for k, v in m.items() if k != "versions"}}
            for op_id, m in self.journal.open_moves().items()
        ]
        return TierStatus(usage, pending, list(self.failed))
