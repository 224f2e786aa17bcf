"""Replication: every change in the catalog's change log, copied to every region.

Terms:

- **region**: a replica of the archive's objects, with one tier per primary
  tier name (``[replicas.NAME]`` in the settings).
- **cursor**: per region, the sequence number of the last change that region
  holds. Cursors live in the catalog's LMDB environment (named database
  ``replica_cursors``), so they are as durable as the change log itself.

The replicator runs one thread per region. Each reads the change log past its
cursor, applies the changes in order through the handler for the change's
``type`` and moves the cursor after each one. Applying a change is
idempotent (objects are immutable and content-addressed by their version
prefix; an object already at the destination with the right checksum is
kept), so a crash between applying a change and moving the cursor only
repeats work. A region that fails is retried with a capped, doubling wait and
catches up from its cursor when it answers again.

Handlers are a table (:data:`HANDLERS`) keyed by change type. A change type
without a handler stops that region's cursor with an error rather than being
skipped: a delete that did not replicate could bring a study back through a
replica.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import IntegrityError, MissingObjectError
from dicomvault.archive.manifest import MANIFEST_NAME, Manifest, study_prefix
from dicomvault.tiers import ObjectKey, ObjectNotFoundError, Tier, make_key, open_tier

if TYPE_CHECKING:
    from dicomvault.archive.index import Catalog, Index

logger = logging.getLogger(__name__)

CURSOR_DB = b"replica_cursors"
_BATCH = 256
_FIRST_WAIT = 0.25


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """How far one region is behind the primary."""

    region: str
    cursor: int
    last_sequence: int
    pending_changes: int
    pending_bytes: int
    oldest_pending_age_seconds: float
    last_error: str


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one change to one region did."""

    objects: int = 0
    bytes: int = 0


Handler = Callable[[dict[str, Tier], dict[str, Tier], dict[str, Any]], Applied]


# -- the change log ----------------------------------------------------------


def read_changes(catalog: Catalog, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` changes with a sequence number above ``after``.

    The LMDB read transaction ends before this returns, so callers may take
    their time over the changes without pinning old pages.
    """
    changes = catalog.changes_since(after)
    try:
        return list(itertools.islice(changes, limit))
    finally:
        changes.close()


def watch_changes(
    catalog: Catalog,
    from_sequence: int,
    is_active: Callable[[], bool],
    poll_seconds: float,
) -> Iterator[dict[str, Any]]:
    """Changes from ``from_sequence`` on (inclusive), then live ones.

    Sequence numbers are consecutive, so a reader that saw change ``n`` and
    asks again from ``n + 1`` misses nothing and sees nothing twice. Ends
    when ``is_active`` returns False.
    """
    after = max(from_sequence, 1) - 1
    while is_active():
        batch = read_changes(catalog, after, _BATCH)
        for change in batch:
            yield change
            after = int(change["seq"])
        if len(batch) < _BATCH:
            time.sleep(poll_seconds)


class CursorStore:
    """Per-region cursors in the catalog's LMDB environment."""

    def __init__(self, catalog: Catalog):
        self._env = catalog.env
        self._db = catalog.env.open_db(CURSOR_DB)

    def get(self, region: str) -> int:
        with self._env.begin(db=self._db) as txn:
            raw = txn.get(region.encode())
        return int(struct.unpack(">Q", raw)[0]) if raw is not None else 0

    def set(self, region: str, seq: int) -> None:
        """Record durably that ``region`` holds every change up to ``seq``."""
        with self._env.begin(write=True, db=self._db) as txn:
            txn.put(region.encode(), struct.pack(">Q", seq))


class DeferredTier:
    """A replica tier opened on first use, and again after a failed open.

    Opening an S3 tier talks to the server; a region that is down when the
    archive starts must not stop the archive, only delay that region.
    """

    def __init__(self, name: str, url: str, storage_options: dict[str, Any]):
        self.name = name
        self.url = url
        self._options = storage_options
        self._tier: Tier | None = None
        self._lock = threading.Lock()

    def _open(self) -> Tier:
        with self._lock:
            if self._tier is None:
                self._tier = open_tier(self.name, self.url, self._options)
            return self._tier

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._open(), attr)


# -- copying objects -------------------------------------------------------


def hash_object(tier: Tier, key: ObjectKey) -> tuple[str, int]:
    """SHA-256 and size of a stored object, read in pieces."""
    digest = hashlib.sha256()
    size = 0
    with tier.open_read(key) as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_object(source: Tier, dest: Tier, key: ObjectKey, sha256: str) -> int:
    """Make ``dest`` hold the object ``key`` of ``source``, verified.

    Idempotent: an object already at ``dest`` with the right checksum is
    kept and 0 is returned; otherwise the number of bytes copied.

    Raises
    ------
    IntegrityError
        The source object does not hash to ``sha256``; nothing is copied,
        so a corrupt object never spreads to a replica.
    """
    if dest.exists(key):
        if hash_object(dest, key)[0] == sha256:
            return 0
        # Objects are immutable, so a different one under this key is a
        # damaged copy (an interrupted earlier attempt); replace it.
        dest.delete(key)
    data = source.read_bytes(key)
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise IntegrityError(
            f"object {key} in tier {source.name} has sha256 {found}, expected "
            f"{sha256}; it was not replicated. Run `dicomvault verify --repair`"
        )
    dest.put_bytes(key, data, sha256=sha256)
    return len(data)


def copy_version(source: Tier, dest: Tier, prefix: str) -> Applied:
    """Copy every object of one instance version, the manifest last.

    The manifest commits a version wherever it lies, so it is written only
    once every object it lists is verified at the destination.
    """
    manifest_key = make_key(prefix, MANIFEST_NAME)
    manifest_bytes = source.read_bytes(manifest_key)
    manifest = Manifest.from_bytes(manifest_bytes, f"{manifest_key} in {source.name}")
    objects, copied = 0, 0
    for obj in manifest.objects:
        copied += copy_object(source, dest, make_key(prefix, obj["key"]), obj["sha256"])
        objects += 1
    copied += copy_object(
        source, dest, manifest_key, hashlib.sha256(manifest_bytes).hexdigest()
    )
    return Applied(objects + 1, copied)


def delete_prefix(dest: Tier, prefix: str, region: str, reason: str) -> int:
    """Remove every object under ``prefix`` in ``dest``, manifests first.

    Manifests go first so that a crash half-way leaves objects no manifest
    claims (removed by ``verify --repair``), never a version that looks
    complete but is not.
    """
    keys = sorted(dest.list(prefix), key=lambda k: not k.endswith(MANIFEST_NAME))
    for key in keys:
        dest.delete(key)
        lk.log_event(
            logger,
            lk.REPLICA_OBJECT_DELETED,
            **{lk.REGION: region, lk.TIER: dest.name, lk.KEY: key, lk.REASON: reason},
        )
    return len(keys)


# -- handlers, one per change type -------------------------------------------


def _apply_stored(
    primary: dict[str, Tier], replica: dict[str, Tier], change: dict[str, Any]
) -> Applied:
    tier = change["tier"]
    try:
        return copy_version(primary[tier], replica[tier], change["prefix"])
    except ObjectNotFoundError:
        # Gone from the primary since: a later change in the log (a delete,
        # a purge or a move) accounts for it, and will be applied in turn.
        if change.get("_superseded"):
            return Applied()
        raise MissingObjectError(
            f"instance version {change['prefix']} of change {change['seq']} is "
            f"missing from primary tier {tier}; run `dicomvault verify --repair`"
        ) from None


def _apply_deleted(
    primary: dict[str, Tier], replica: dict[str, Tier], change: dict[str, Any]
) -> Applied:
    # Deletes and purges carry either the prefix of one version, a list of
    # prefixes, or a study UID. Every replica tier is cleared, not only the
    # one named, so no copy of a deleted study can come back from a replica.
    prefixes = list(change.get("prefixes") or [])
    if change.get("prefix"):
        prefixes.append(change["prefix"])
    if not prefixes and change.get("study_uid"):
        prefixes.append(study_prefix(change["study_uid"]))
    if not prefixes:
        raise IntegrityError(
            f"change {change['seq']} of type {change['type']} names no prefix, "
            "prefixes or study_uid; the replicator cannot tell what to delete"
        )
    removed = 0
    for tier in replica.values():
        for prefix in prefixes:
            removed += delete_prefix(
                tier, prefix, change.get("_region", ""), change["type"]
            )
    return Applied(removed, 0)


def _apply_moved(
    primary: dict[str, Tier], replica: dict[str, Tier], change: dict[str, Any]
) -> Applied:
    # A move copies into the new tier, verifies, then deletes from the old
    # one: a crash in between leaves two copies, never none.
    to_tier, from_tier = change["to_tier"], change["from_tier"]
    prefixes = list(change.get("prefixes") or [change["prefix"]])
    total = Applied()
    for prefix in prefixes:
        done = copy_version(primary[to_tier], replica[to_tier], prefix)
        total = Applied(total.objects + done.objects, total.bytes + done.bytes)
        delete_prefix(replica[from_tier], prefix, change.get("_region", ""), "moved")
    return total


def _apply_versions_moved(
    primary: dict[str, Tier], replica: dict[str, Tier], change: dict[str, Any]
) -> Applied:
    # A study move lists each version with the tier it left; the replica
    # copies into the new tier first, then drops the old copy.
    if "versions" not in change:
        return _apply_moved(primary, replica, change)
    to_tier = change["to_tier"]
    total = Applied()
    for version in change["versions"]:
        done = copy_version(primary[to_tier], replica[to_tier], version["prefix"])
        total = Applied(total.objects + done.objects, total.bytes + done.bytes)
        if version["from_tier"] != to_tier:
            delete_prefix(
                replica[version["from_tier"]],
                version["prefix"],
                change.get("_region", ""),
                "moved",
            )
    return total


def _apply_versions_deleted(
    primary: dict[str, Tier], replica: dict[str, Tier], change: dict[str, Any]
) -> Applied:
    # Marked or purged instances leave every replica tier at once, so a drill
    # from a replica cannot bring back what was deleted.
    prefixes = [v["prefix"] for v in change.get("versions", [])]
    return _apply_deleted(primary, replica, {**change, "prefixes": prefixes})


def _apply_versions_restored(
    primary: dict[str, Tier], replica: dict[str, Tier], change: dict[str, Any]
) -> Applied:
    total = Applied()
    for version in change.get("versions", []):
        done = copy_version(
            primary[version["tier"]], replica[version["tier"]], version["prefix"]
        )
        total = Applied(total.objects + done.objects, total.bytes + done.bytes)
    return total


def _apply_nothing(
    primary: dict[str, Tier], replica: dict[str, Tier], change: dict[str, Any]
) -> Applied:
    return Applied()


HANDLERS: dict[str, Handler] = {
    "instance.stored": _apply_stored,
    "instance.restored": _apply_stored,
    "study.restored": _apply_moved,
    "study.moved": _apply_versions_moved,
    "instances.deleted": _apply_versions_deleted,
    "instances.purged": _apply_versions_deleted,
    "instances.restored": _apply_versions_restored,
    "instance.deleted": _apply_deleted,
    "study.deleted": _apply_deleted,
    "instance.purged": _apply_deleted,
    "study.purged": _apply_deleted,
    # The index is derived data: a rebuild changes no object.
    "index.rebuilt": _apply_nothing,
    # Audit events are copied with the change log itself, not as objects.
    "audit.recorded": _apply_nothing,
}


# -- the replicator ----------------------------------------------------------


@dataclass(slots=True)
class _RegionState:
    last_error: str = ""
    replicated: int = 0


class Replicator:
    """Copies the change log to every replica region, one thread per region.

    Parameters
    ----------
    index
        The primary's index (catalog with the change log and the cursors).
    tiers
        The primary tiers by name.
    regions
        Replica tiers by region name, then tier name.
    poll_seconds, retry_max_seconds
        From ``replication.*`` settings.
    """

    def __init__(
        self,
        index: Index,
        tiers: dict[str, Tier],
        regions: dict[str, dict[str, Tier]],
        poll_seconds: float,
        retry_max_seconds: float,
    ):
        self.index = index
        self.tiers = tiers
        self.regions = regions
        self.poll_seconds = poll_seconds
        self.retry_max_seconds = retry_max_seconds
        self.cursors = CursorStore(index.catalog)
        self._state = {name: _RegionState() for name in regions}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one thread per region."""
        for name in self.regions:
            thread = threading.Thread(
                target=self._run, args=(name,), name=f"replicate-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            lk.log_event(
                logger,
                lk.REPLICATION_STARTED,
                **{lk.REGION: name, lk.SEQ: self.cursors.get(name)},
            )

    def stop(self) -> None:
        """Stop the threads after the change each is applying."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, region: str) -> None:
        wait = _FIRST_WAIT
        state = self._state[region]
        while not self._stop.is_set():
            try:
                applied = self.sync_once(region)
            except Exception as err:  # noqa: BLE001 - retried with backoff
                state.last_error = f"{type(err).__name__}: {err}"
                lk.log_event(
                    logger,
                    lk.REPLICA_LAGGING,
                    logging.WARNING,
                    **{
                        lk.REGION: region,
                        lk.SEQ: self.cursors.get(region) + 1,
                        lk.ERROR: type(err).__name__,
                        "retry_seconds": f"{wait:.2f}",
                    },
                )
                self._stop.wait(wait)
                wait = min(self.retry_max_seconds, wait * 2)
                continue
            state.last_error = ""
            wait = _FIRST_WAIT
            if applied == 0:
                self._stop.wait(self.poll_seconds)

    def sync_once(self, region: str) -> int:
        """Apply the next batch of changes to ``region``; return how many.

        Raises whatever the region or the primary raised; the cursor then
        stays on the change that failed.
        """
        replica = self.regions[region]
        cursor = self.cursors.get(region)
        changes = read_changes(self.index.catalog, cursor, _BATCH)
        for change in changes:
            if self._stop.is_set():
                break
            handler = HANDLERS.get(change["type"])
            if handler is None:
                raise NotImplementedError(
                    f"no replication handler for change type {change['type']!r} "
                    f"(sequence {change['seq']}); region {region} waits here "
                    "until the server is upgraded"
                )
            change = {**change, "_region": region}
            if change["type"] == "instance.stored":
                change["_superseded"] = self._superseded(change)
            done = handler(self.tiers, replica, change)
            self.cursors.set(region, int(change["seq"]))
            self._state[region].replicated += 1
            lk.log_event(
                logger,
                lk.CHANGE_REPLICATED,
                **{
                    lk.REGION: region,
                    lk.SEQ: change["seq"],
                    lk.CHANGE_TYPE: change["type"],
                    lk.SOP_INSTANCE_UID: change.get("sop_instance_uid", ""),
                    lk.OBJECTS: done.objects,
                    lk.BYTES: done.bytes,
                },
            )
        return len(changes)

    def _superseded(self, change: dict[str, Any]) -> bool:
        record = self.index.catalog.get(change["sop_instance_uid"])
        return record is None or change["version"] not in record.versions

    def status(self) -> list[RegionStatus]:
        """Per region: pending changes and bytes, oldest pending age, error."""
        catalog = self.index.catalog
        last = catalog.last_seq()
        now = dt.datetime.now(dt.UTC)
        out = []
        for region, state in self._state.items():
            cursor = self.cursors.get(region)
            pending_bytes, oldest = 0, 0.0
            for change in catalog.changes_since(cursor):
                if change["type"] != "instance.stored":
                    continue
                record = catalog.get(change["sop_instance_uid"])
                version = record.versions.get(change["version"]) if record else None
                if version is None:
                    continue
                pending_bytes += version.size
                if not oldest:
                    stored = dt.datetime.fromisoformat(version.stored_at)
                    oldest = max(0.0, (now - stored).total_seconds())
            out.append(
                RegionStatus(
                    region,
                    cursor,
                    last,
                    last - cursor,
                    pending_bytes,
                    oldest,
                    state.last_error,
                )
            )
        return out


def change_to_json(change: dict[str, Any]) -> str:
    """One change as compact JSON, without the replicator's private fields."""
    return json.dumps(
        {k: v for k, v in change.items() if not k.startswith("_")},
        separators=(",", ":"),
    )
