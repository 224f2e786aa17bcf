"""Keeping the archive whole: crash recovery, index rebuild and verify.

- ``recover`` runs at every start: each write intent left by a crash is
  rolled forward (its manifest made it, so the version is complete) or back
  (its objects are removed); then the metadata index replays the catalog's
  change log past the last change it applied.
- ``rebuild_index`` recreates the catalog and the metadata index from the
  manifests in the tiers alone.
- ``verify`` re-hashes every object against its manifest, and reports (with
  ``repair``: removes) leftovers of interrupted writes.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import IntegrityError
from dicomvault.archive.index import Index
from dicomvault.archive.index.catalog import InstanceRecord, VersionRecord
from dicomvault.archive.index.moves import MoveJournal
from dicomvault.archive.manifest import MANIFEST_NAME, STUDIES_ROOT, Manifest
from dicomvault.tiers import ObjectKey, ObjectNotFoundError, Tier, make_key
from dicomvault.tiers.local import TMP_PREFIX

logger = logging.getLogger(__name__)

_PREFIX_DEPTH = 5  # studies/<study>/<series>/<sop>/<version>


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of ``verify``."""

    kind: str  # corrupt, missing, leftover, unindexed
    tier: str
    key: str
    detail: str
    repaired: bool = False


@dataclass(slots=True)
class VerifyReport:
    """What ``verify`` checked and found."""

    instances_checked: int = 0
    objects_checked: int = 0
    bytes_checked: int = 0
    problems: list[Problem] = field(default_factory=list)


def _version_record(manifest: Manifest, tier: str) -> VersionRecord:
    return VersionRecord(
        version=manifest.version,
        tier=tier,
        prefix=manifest.prefix,
        sha256=manifest.sha256,
        size=manifest.size,
        frames=int(manifest.frames.get("count", 0)),
        transfer_syntax_uid=manifest.transfer_syntax_uid,
        sop_class_uid=manifest.sop_class_uid,
        stored_at=manifest.stored_at,
    )


def _read_manifest(tier: Tier, prefix: str) -> Manifest:
    key = make_key(prefix, MANIFEST_NAME)
    return Manifest.from_bytes(tier.read_bytes(key), f"{key} in tier {tier.name}")


def _prefix_of(key: str) -> str | None:
    parts = key.split("/")
    if len(parts) <= _PREFIX_DEPTH or parts[0] != STUDIES_ROOT:
        return None
    return "/".join(parts[:_PREFIX_DEPTH])


def _hash_object(tier: Tier, key: ObjectKey) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with tier.open_read(key) as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _manifests(tiers: dict[str, Tier]) -> Iterator[tuple[str, Manifest]]:
    for name, tier in tiers.items():
        for key in tier.list(STUDIES_ROOT):
            if key.endswith("/" + MANIFEST_NAME) and _prefix_of(key) is not None:
                try:
                    yield name, _read_manifest(tier, key.rsplit("/", 1)[0])
                except IntegrityError as err:
                    logger.error("skipping unreadable manifest: %s", err)


def commit_manifest(index: Index, manifest: Manifest, tier: str, op_id: str) -> None:
    """Commit a complete version found in a tier to both indexes."""
    seq = index.commit(manifest, _version_record(manifest, tier), op_id)
    index.metadata.flush(seq)


def recover(index: Index, tiers: dict[str, Tier]) -> None:
    """Resolve write intents left by a crash, then catch the metadata up."""
    for op_id, intent in index.catalog.intents().items():
        tier = tiers.get(intent["tier"])
        if tier is None:
            logger.error(
                "intent %s names unknown tier %s; left open", op_id, intent["tier"]
            )
            continue
        prefix = intent["prefix"]
        try:
            manifest = _read_manifest(tier, prefix)
            for obj in manifest.objects:
                if tier.size(make_key(prefix, obj["key"])) != obj["size"]:
                    raise IntegrityError(f"object {obj['key']} has the wrong size")
        except (ObjectNotFoundError, IntegrityError):
            keys = list(tier.list(prefix))
            for key in sorted(keys, key=lambda k: not k.endswith(MANIFEST_NAME)):
                tier.delete(key)
            index.catalog.end_intent(op_id)
            lk.log_event(
                logger,
                lk.WRITE_ROLLED_BACK,
                **{
                    lk.OP_ID: op_id,
                    lk.TIER: tier.name,
                    lk.KEY: prefix,
                    lk.OBJECTS: len(keys),
                },
            )
            continue
        record = index.catalog.get(manifest.sop_instance_uid)
        if record is None or manifest.version not in record.versions:
            commit_manifest(index, manifest, tier.name, op_id)
        else:
            index.catalog.end_intent(op_id)
        lk.log_event(
            logger,
            lk.WRITE_ROLLED_FORWARD,
            **{
                lk.OP_ID: op_id,
                lk.TIER: tier.name,
                lk.SOP_INSTANCE_UID: manifest.sop_instance_uid,
                lk.VERSION: manifest.version,
            },
        )
    catch_up(index, tiers)


def catch_up(index: Index, tiers: dict[str, Tier]) -> int:
    """Apply catalog changes the metadata index has not seen; return how many."""
    applied = index.metadata.applied_seq()
    count = 0
    for change in index.catalog.changes_since(applied):
        if change["type"] == "audit.recorded":
            continue  # the audit table catches up on its own (archive.audit)
        if change["type"] == "index.rebuilt":
            _refill_metadata(index, tiers, change["seq"])
        elif change["type"] == "instances.deleted":
            index.metadata.remove_instances(change["sop_instance_uids"], change["seq"])
        elif change["type"] == "instances.restored":
            for sop_uid in change["sop_instance_uids"]:
                record = index.catalog.get(sop_uid)
                if record is not None:
                    version = record.current_version
                    manifest = _read_manifest(tiers[version.tier], version.prefix)
                    index.metadata.apply(manifest, version.tier, change["seq"])
        elif change["type"] == lk.STUDY_MOVED:
            _reindex_study(index, tiers, change["study_uid"], change["seq"])
        elif change["type"] == "instance.stored":
            tier = tiers[change["tier"]]
            record = index.catalog.get(change["sop_instance_uid"])
            if record is not None and record.current == change["version"]:
                index.metadata.apply(
                    _read_manifest(tier, change["prefix"]), tier.name, change["seq"]
                )
        count += 1
    if count:
        lk.log_event(logger, lk.INDEX_REPLAYED, **{lk.COUNT: count})
    return count


def _reindex_study(
    index: Index, tiers: dict[str, Tier], study_uid: str, seq: int
) -> None:
    # A study moved: its metadata rows name the tier, so they are rewritten
    # from the current manifests wherever they now live.
    for _series, sop_uid in index.catalog.study_members(study_uid):
        record = index.catalog.get(sop_uid)
        if record is not None:
            version = record.current_version
            manifest = _read_manifest(tiers[version.tier], version.prefix)
            index.metadata.enqueue(manifest, version.tier, seq)
    index.metadata.flush(seq)


def _refill_metadata(index: Index, tiers: dict[str, Tier], seq: int) -> None:
    entries = []
    for record in index.catalog.iter_records():
        version = record.current_version
        entries.append(
            (_read_manifest(tiers[version.tier], version.prefix), version.tier)
        )
    entries.sort(key=lambda entry: entry[0].stored_at)
    index.metadata.replace_all(entries, seq)


def rebuild_index(index: Index, tiers: dict[str, Tier]) -> tuple[int, int, float]:
    """Recreate the catalog and metadata index from the tiers' manifests.

    Returns
    -------
    tuple
        (instances, studies, seconds).
    """
    started = time.monotonic()
    records: dict[str, InstanceRecord] = {}
    manifests: dict[str, tuple[Manifest, str]] = {}
    for tier_name, manifest in _manifests(tiers):
        sop = manifest.sop_instance_uid
        record = records.setdefault(
            sop, InstanceRecord(sop, manifest.study_uid, manifest.series_uid, "", {})
        )
        record.versions[manifest.version] = _version_record(manifest, tier_name)
        current = manifests.get(sop)
        if current is None or manifest.stored_at > current[0].stored_at:
            manifests[sop] = (manifest, tier_name)
            record.current = manifest.version
            record.study_uid, record.series_uid = (
                manifest.study_uid,
                manifest.series_uid,
            )
    seq = index.catalog.replace_all(list(records.values()))
    # In the order they were stored, so that patient and study rows end with
    # the values of the newest instance, as they did before the rebuild.
    ordered = sorted(manifests.values(), key=lambda entry: entry[0].stored_at)
    index.metadata.replace_all(ordered, seq)
    seconds = time.monotonic() - started
    studies = len({r.study_uid for r in records.values()})
    lk.log_event(
        logger,
        lk.INDEX_REBUILT,
        **{lk.COUNT: len(records), "studies": studies, lk.SECONDS: f"{seconds:.3f}"},
    )
    return len(records), studies, seconds


def verify(
    index: Index, tiers: dict[str, Tier], spool_dir: Path, repair: bool
) -> VerifyReport:
    """Re-hash every object; find leftovers; with ``repair`` remove them.

    Corrupt or missing objects of indexed instances are reported; they are
    not changed here (a replica is needed to repair them).
    """
    report = VerifyReport()
    indexed: set[tuple[str, str]] = set()
    for record in index.catalog.iter_records():
        for version in record.versions.values():
            indexed.add((version.tier, version.prefix))
            report.instances_checked += 1
            _verify_version(tiers[version.tier], version, report)
    open_prefixes = {(i["tier"], i["prefix"]) for i in index.catalog.intents().values()}
    # Objects of a move in progress are not leftovers: both copies count
    # until the mover has switched the catalog and removed the source.
    for move in MoveJournal(index.catalog).open_moves().values():
        for versions in move["versions"].values():
            for entry in versions.values():
                open_prefixes.add((move["target"], entry["prefix"]))
                open_prefixes.add((entry["source"], entry["prefix"]))

    for name, tier in tiers.items():
        by_prefix: dict[str, list[ObjectKey]] = defaultdict(list)
        for key in tier.list():
            prefix = _prefix_of(key)
            if key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                _leftover(
                    tier,
                    [key],
                    "temporary file of an interrupted write",
                    repair,
                    report,
                )
            elif prefix is None:
                continue
            elif (name, prefix) not in indexed and (name, prefix) not in open_prefixes:
                by_prefix[prefix].append(key)
        for prefix, keys in by_prefix.items():
            _unindexed(index, tier, prefix, keys, repair, report)

    for leftover in sorted(spool_dir.glob("*")) if spool_dir.exists() else []:
        report.problems.append(
            Problem(
                "leftover",
                "spool",
                leftover.name,
                "spooled upload or staging folder",
                repaired=repair,
            )
        )
        if repair:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    return report


def _verify_version(tier: Tier, version: VersionRecord, report: VerifyReport) -> None:
    try:
        manifest = _read_manifest(tier, version.prefix)
    except ObjectNotFoundError:
        report.problems.append(
            Problem(
                "missing",
                tier.name,
                f"{version.prefix}/{MANIFEST_NAME}",
                "manifest of an indexed instance is missing",
            )
        )
        return
    except IntegrityError as err:
        report.problems.append(
            Problem("corrupt", tier.name, f"{version.prefix}/{MANIFEST_NAME}", str(err))
        )
        return
    for obj in manifest.objects:
        key = make_key(version.prefix, obj["key"])
        try:
            found, size = _hash_object(tier, key)
        except ObjectNotFoundError:
            report.problems.append(
                Problem("missing", tier.name, key, "object is missing")
            )
            continue
        report.objects_checked += 1
        report.bytes_checked += size
        if found != obj["sha256"]:
            lk.log_event(
                logger,
                lk.OBJECT_CORRUPT,
                logging.ERROR,
                **{
                    lk.TIER: tier.name,
                    lk.KEY: key,
                    lk.SHA256: found,
                    "expected_sha256": obj["sha256"],
                },
            )
            report.problems.append(
                Problem(
                    "corrupt",
                    tier.name,
                    key,
                    f"sha256 {found}, expected {obj['sha256']} ({size} bytes)",
                )
            )


def _leftover(
    tier: Tier, keys: list[ObjectKey], why: str, repair: bool, report: VerifyReport
) -> None:
    for key in keys:
        if repair:
            tier.delete(key)
            lk.log_event(
                logger,
                lk.LEFTOVER_DELETED,
                **{lk.TIER: tier.name, lk.KEY: key, lk.REASON: why},
            )
        report.problems.append(
            Problem("leftover", tier.name, key, why, repaired=repair)
        )


def _unindexed(
    index: Index,
    tier: Tier,
    prefix: str,
    keys: list[ObjectKey],
    repair: bool,
    report: VerifyReport,
) -> None:
    try:
        manifest = _read_manifest(tier, prefix)
        complete = all(
            tier.exists(make_key(prefix, o["key"])) for o in manifest.objects
        )
    except (ObjectNotFoundError, IntegrityError):
        complete = False
    if not complete:
        _leftover(
            tier,
            sorted(keys, key=lambda k: not k.endswith(MANIFEST_NAME)),
            "object of an interrupted write (no complete manifest)",
            repair,
            report,
        )
        return
    # A complete version the catalog does not know: keep the data and index
    # it, since deleting a complete instance could lose an image.
    report.problems.append(
        Problem(
            "unindexed",
            tier.name,
            prefix,
            "complete instance version missing from the index",
            repaired=repair,
        )
    )
    if repair:
        commit_manifest(index, manifest, tier.name, "verify-repair")
