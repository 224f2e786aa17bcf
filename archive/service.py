"""The archive service: the one API both front doors (gRPC, DICOMweb) call.

An :class:`Archive` owns the tiers, the index, the ingestor and the reader
of one data folder. Uploads arrive through :meth:`Archive.begin_upload`,
which spools them to disk while hashing, so no instance is ever held whole
in memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dicomvault.archive import (
    auth,
    export,
    lifecycle,
    maintenance,
    retention,
    search,
    sql,
    transcode,
    wado,
)
from dicomvault.archive import logkeys as lk
from dicomvault.archive.audit import AuditLog, reads_audit_table
from dicomvault.archive.auth import Principal, authorize
from dicomvault.archive.config import Settings
from dicomvault.archive.deid import DeidOptions
from dicomvault.archive.deid_export import DeidStudyReport, export_deidentified_study
from dicomvault.archive.errors import (
    DicomVaultError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    RefusedError,
    TruncatedUploadError,
)
from dicomvault.archive.index import Index, InstanceRecord, extended
from dicomvault.archive.index.deletions import DeletionJournal
from dicomvault.archive.ingest import Ingestor, StoreOutcome
from dicomvault.archive.input_limits import InputLimits, check_header
from dicomvault.archive.mover import MoveOutcome, Mover, TierStatus
from dicomvault.archive.promotion import Warmer
from dicomvault.archive.retrieve import FrameOut, Reader
from dicomvault.archive.sql import SqlBatch
from dicomvault.archive.uids import check_uid
from dicomvault.codecs import Sha256Stream
from dicomvault.tiers import Tier, open_tier

logger = logging.getLogger(__name__)

ACCESS_GRANULARITY = dt.timedelta(hours=1)


class Upload:
    """One instance arriving in pieces, spooled to a local file."""

    def __init__(
        self, path: Path, declared_size: int, declared_sha256: str, max_bytes: int
    ):
        self.path = path
        self.declared_size = declared_size
        self.declared_sha256 = declared_sha256.lower()
        self.max_bytes = max_bytes
        self.hash = Sha256Stream()
        self._fh = open(path, "wb")

    def write(self, data: bytes) -> None:
        """Append bytes; refuses to grow past the size limits."""
        limit = self.declared_size or self.max_bytes
        if self.hash.size + len(data) > limit:
            if self.declared_size:
                raise InvalidInputError(
                    "upload is longer than its declared size "
                    f"of {self.declared_size} bytes"
                )
            raise LimitExceededError(
                "instance is larger than ingest.max_instance_bytes "
                f"({self.max_bytes} bytes)"
            )
        self._fh.write(data)
        self.hash.update(data)

    def finish(self) -> tuple[str, int]:
        """Close the spool file and check the declared size and checksum."""
        self._fh.close()
        size, digest = self.hash.size, self.hash.hexdigest()
        if self.declared_size and size != self.declared_size:
            raise TruncatedUploadError(
                f"truncated upload: {size} of {self.declared_size} "
                "declared bytes arrived"
            )
        if self.declared_sha256 and digest != self.declared_sha256:
            raise InvalidInputError(
                f"upload has sha256 {digest} "
                f"but the client declared {self.declared_sha256}"
            )
        return digest, size

    def discard(self) -> None:
        """Drop the spooled bytes."""
        if not self._fh.closed:
            self._fh.close()
        self.path.unlink(missing_ok=True)


class Archive:
    """One archive: tiers, index and the operations over them.

    Open with :meth:`open`; close with :meth:`close`.
    """

    def __init__(self, settings: Settings, tiers: dict[str, Tier], index: Index):
        self.settings = settings
        self.tiers = tiers
        self.index = index
        self.spool_dir = settings.data_dir / "spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.ingestor = Ingestor(
            tiers,
            index,
            self.spool_dir,
            default_tier=settings.get("storage.default_tier"),
            on_conflict=settings.get("ingest.on_conflict"),
            shard_bytes=settings.get("storage.shard_bytes"),
            zstd_levels={name: t.zstd_level for name, t in settings.tiers.items()},
        )
        self.reader = Reader(tiers, settings.get("ingest.chunk_bytes"))

    @classmethod
    def open(cls, settings: Settings) -> Archive:
        """Open the archive of ``settings.data_dir`` and recover from a crash."""
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        tiers = {
            name: open_tier(name, conf.url, dict(conf.storage_options), conf.encryption)
            for name, conf in settings.tiers.items()
        }
        clean_spool(data_dir / "spool")
        index = Index.open(data_dir / "index")
        archive = cls(settings, tiers, index)
        maintenance.recover(index, tiers)
        archive.recover_moves()
        return archive

    def close(self) -> None:
        self.close_audit()
        self.index.close()

    # -- ingest -------------------------------------------------------------

    def begin_upload(self, declared_size: int = 0, declared_sha256: str = "") -> Upload:
        """Start spooling one instance."""
        max_bytes = self.settings.get("ingest.max_instance_bytes")
        if declared_size > max_bytes:
            raise LimitExceededError(
                f"declared size {declared_size} bytes "
                f"is above ingest.max_instance_bytes ({max_bytes} bytes)"
            )
        path = self.spool_dir / f"upload-{uuid.uuid4().hex}.dcm"
        return Upload(path, declared_size, declared_sha256, max_bytes)

    def store_upload(
        self, upload: Upload, calling_application: str = ""
    ) -> StoreOutcome:
        """Store a finished upload (see :meth:`Ingestor.store`).

        The spool file is removed.
        """
        try:
            sha256, size = upload.finish()
            check_header(upload.path, InputLimits.from_settings(self.settings))
            return self.ingestor.store(upload.path, sha256, size, calling_application)
        finally:
            upload.discard()

    def store_file(self, path: Path, calling_application: str = "") -> StoreOutcome:
        """Store a local DICOM file (copied through the spool)."""
        upload = self.begin_upload()
        with open(path, "rb") as fh:
            while chunk := fh.read(4 << 20):
                upload.write(chunk)
        return self.store_upload(upload, calling_application)

    # -- retrieve -----------------------------------------------------------

    def record(self, sop_uid: str) -> InstanceRecord:
        """The catalog record of an instance.

        Raises
        ------
        NotFoundError
            No instance has this UID.
        """
        check_uid(sop_uid, "SOPInstanceUID")
        record = self.index.catalog.get(sop_uid)
        if record is None:
            raise NotFoundError(f"no instance with SOP Instance UID {sop_uid}")
        return record

    def retrieve(
        self, sop_uid: str, version: str = ""
    ) -> tuple[InstanceRecord, Iterator[bytes]]:
        """The record and a verified byte stream of one instance."""
        record = self.record(sop_uid)
        self._after_read(record)
        return record, self.reader.stream(record, version)

    def frames(
        self, sop_uid: str, numbers: list[int], decode: bool, version: str = ""
    ) -> Iterator[FrameOut]:
        """Frames of one instance (1-based numbers; empty for all)."""
        record = self.record(sop_uid)
        self._after_read(record)
        return self.reader.frames(  # type: ignore[no-any-return]
            record, version, numbers, decode
        )

    # -- query ----------------------------------------------------------------

    def search(
        self,
        level: str,
        match: dict[str, str],
        include_fields: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        count_total: bool = False,
        *,
        fuzzy: bool = False,
        cursor: str = "",
    ) -> search.SearchPage:
        """Search the metadata index; see :func:`dicomvault.archive.search.search`."""
        return search.search(
            self.index.metadata,
            level,
            match,
            include_fields or [],
            limit,
            offset,
            count_total,
            fuzzy=fuzzy,
            cursor=cursor,
        )

    def sql(
        self, statement: str, batch_rows: int = 0, arrow: bool = False
    ) -> Iterator[sql.SqlBatch]:
        """Run read-only SQL; see :func:`dicomvault.archive.sql.run_query`."""
        return sql.run_query(  # type: ignore[no-any-return]
            self.index.metadata,
            statement,
            batch_rows=batch_rows or self.settings.get("sql.batch_rows"),
            max_rows=self.settings.get("sql.max_rows"),
            timeout_seconds=self.settings.get("sql.timeout_seconds"),
            arrow=arrow,
        )

    # -- maintenance ------------------------------------------------------------

    def rebuild_index(self) -> tuple[int, int, float]:
        """Recreate LMDB and DuckDB from the tiers; see ``maintenance``."""
        return maintenance.rebuild_index(  # type: ignore[no-any-return]
            self.index, self.tiers
        )

    def verify(self, repair: bool = False) -> maintenance.VerifyReport:
        """Re-hash every object; see :func:`maintenance.verify`."""
        report = maintenance.verify(self.index, self.tiers, self.spool_dir, repair)
        if repair:
            self.repair_from_replicas(report)
        return report

    def describe(self) -> dict[str, Any]:
        """Addresses and sizes for the start-up line and status output."""
        return {
            lk.DATA_DIR: str(self.settings.data_dir),
            "tiers": ",".join(f"{n}={t.url}" for n, t in self.tiers.items()),
            "instances": len(self.index.catalog),
        }

    # -- security ---------------------------------------------------------------

    def audit_log(self) -> AuditLog:
        """The audit trail of this archive, opened on first use."""
        with _AUDIT_OPEN:
            log: AuditLog | None = self.__dict__.get("_audit")
            if log is None:
                log = AuditLog(
                    self.index.catalog,
                    self.settings.data_dir / "index" / "audit.duckdb",
                )
                self.__dict__["_audit"] = log
        return log

    def close_audit(self) -> None:
        """Close the audit table if it was opened."""
        log = self.__dict__.pop("_audit", None)
        if log is not None:
            log.close()

    def sql_as(
        self,
        principal: Principal,
        statement: str,
        batch_rows: int = 0,
        arrow: bool = False,
    ) -> Iterator[SqlBatch]:
        """Run read-only SQL for ``principal``; ``audit_events`` needs ``auditor``.

        A statement naming ``audit_events`` runs on the audit database, and
        only for a principal allowed ``sql.audit``; any other runs on the
        metadata index (see :func:`dicomvault.archive.audit.reads_audit_table`).

        Raises
        ------
        PermissionDeniedError
            The statement reads the audit table and the principal is no auditor.
        """
        if not reads_audit_table(statement):
            return self.sql(statement, batch_rows, arrow)
        authorize(principal, auth.SQL_AUDIT)
        self.audit_log().flush_table()
        return sql.run_query(  # type: ignore[no-any-return]
            # The audit log offers the same cursor() as the metadata index.
            self.audit_log(),
            statement,
            batch_rows=batch_rows or self.settings.get("sql.batch_rows"),
            max_rows=self.settings.get("sql.max_rows"),
            timeout_seconds=self.settings.get("sql.timeout_seconds"),
            arrow=arrow,
        )

    # -- web retrieval (DICOMweb) ------------------------------------------------

    def instances_under(
        self, study_uid: str, series_uid: str = "", sop_uid: str = ""
    ) -> list[InstanceRecord]:
        """Records of a study, series or instance; see ``wado.select_instances``."""
        return wado.select_instances(  # type: ignore[no-any-return]
            self, study_uid, series_uid, sop_uid
        )

    def instance_metadata(self, record: InstanceRecord) -> dict[str, Any]:
        """DICOM JSON with relative BulkDataURIs; see ``wado.instance_metadata``."""
        return wado.instance_metadata(self, record)  # type: ignore[no-any-return]

    def bulkdata(self, sop_uid: str, tag: str) -> bytes:
        """One element's value bytes; see ``wado.read_bulkdata``."""
        return wado.read_bulkdata(  # type: ignore[no-any-return]
            self, self.record(sop_uid), tag
        )

    def frames_as(
        self, sop_uid: str, numbers: list[int], transfer_syntax_uid: str
    ) -> Iterator[tuple[int, bytes, str]]:
        """Frames in a requested transfer syntax; see ``wado.frames_in``."""
        return wado.frames_in(  # type: ignore[no-any-return]
            self, sop_uid, numbers, transfer_syntax_uid
        )

    def transcode(self, sop_uid: str, transfer_syntax_uid: str) -> bytes:
        """The whole instance in another transfer syntax (in memory)."""
        _record, stream = self.retrieve(sop_uid)
        return transcode.transcode_instance(  # type: ignore[no-any-return]
            b"".join(stream), transfer_syntax_uid
        )

    def render(
        self,
        sop_uid: str,
        number: int,
        media_type: str,
        window: Any = None,
    ) -> bytes:
        """A frame as JPEG or PNG; see ``wado.render``.

        ``window`` is a :class:`transcode.Window`, or None for the instance's own.
        """
        return wado.render(  # type: ignore[no-any-return]
            self, sop_uid, number, media_type, window
        )

    # -- de-identification ----------------------------------------------------

    def deidentify_study(
        self, study_uid: str, target: Tier, options: DeidOptions
    ) -> DeidStudyReport:
        """Write a de-identified copy of a study to ``target``.

        See :func:`dicomvault.archive.deid_export.export_deidentified_study`.
        """
        return export_deidentified_study(self, study_uid, target, options)

    # -- replication, change feed, repair ---------------------------------------

    def replica_tiers(self) -> dict[str, dict[str, Tier]]:
        """The tiers of every replica region, by region then tier name."""
        from dicomvault.archive.replication import DeferredTier

        cached: dict[str, dict[str, Tier]] | None = self.__dict__.get("_replicas")
        if cached is None:
            cached = {
                region: {
                    name: DeferredTier(name, conf.url, dict(conf.storage_options))
                    for name, conf in replica.tiers.items()
                }
                for region, replica in self.settings.replicas.items()
            }
            self.__dict__["_replicas"] = cached
        return cached

    def start_replication(self) -> None:
        """Start the replicator, the scheduled scrub and failover reads.

        Each is off unless configured: replica regions, a
        ``replication.scrub_interval_seconds`` above 0, and
        ``replication.failover_reads``.
        """
        from dicomvault.archive.failover import FailoverTier
        from dicomvault.archive.replication import Replicator
        from dicomvault.archive.scrub import Scrubber

        regions = self.replica_tiers()
        self.replicator = Replicator(
            self.index,
            self.tiers,
            regions,
            self.settings.get("replication.poll_seconds"),
            self.settings.get("replication.retry_max_seconds"),
        )
        self.replicator.start()
        # The scrub repairs from replicas only: verify's own repair removes
        # spool files and temporary objects, which uploads in flight still use.
        self.scrubber = Scrubber(
            lambda: self.repair_from_replicas(self.verify(repair=False)),
            self.settings.get("replication.scrub_interval_seconds"),
        )
        self.scrubber.start()
        if regions and self.settings.get("replication.failover_reads"):
            failover: dict[str, Tier] = {
                name: FailoverTier(
                    tier, {r: t[name] for r, t in regions.items() if name in t}
                )
                for name, tier in self.tiers.items()
            }
            self.reader = Reader(failover, self.settings.get("ingest.chunk_bytes"))

    def stop_replication(self) -> None:
        """Stop the threads :meth:`start_replication` started."""
        for worker in (
            getattr(self, "scrubber", None),
            getattr(self, "replicator", None),
        ):
            if worker is not None:
                worker.stop()

    def replication_status(self) -> list[Any]:
        """Per region lag and last error; see :meth:`Replicator.status`."""
        replicator = getattr(self, "replicator", None)
        if replicator is None:
            from dicomvault.archive.replication import Replicator

            replicator = Replicator(self.index, self.tiers, self.replica_tiers(), 1, 1)
        return replicator.status()  # type: ignore[no-any-return]

    def watch_changes(
        self, from_sequence: int, is_active: Callable[[], bool]
    ) -> Iterator[dict[str, Any]]:
        """Changes from ``from_sequence`` on, then live ones; gapless."""
        from dicomvault.archive.replication import watch_changes

        return watch_changes(  # type: ignore[no-any-return]
            self.index.catalog,
            from_sequence,
            is_active,
            self.settings.get("replication.poll_seconds"),
        )

    def repair_from_replicas(self, report: maintenance.VerifyReport) -> int:
        """Replace corrupt or missing objects from a replica region.

        Changes stored data; see :mod:`dicomvault.archive.repair`.
        """
        from dicomvault.archive.repair import repair_from_replicas

        repaired = repair_from_replicas(report, self.tiers, self.replica_tiers())
        if repaired:
            self.reader = Reader(self.reader.tiers, self.reader.chunk_bytes)
        return repaired  # type: ignore[no-any-return]

    # -- tiers ------------------------------------------------------------------

    def _mover(self) -> Mover:
        mover: Mover | None = getattr(self, "_mover_instance", None)
        if mover is None:
            mover = Mover(
                self.tiers,
                self.index,
                self.spool_dir,
                {name: t.zstd_level for name, t in self.settings.tiers.items()},
                self.reader,
                self.settings.get("debug.pause_move_at"),
            )
            self._mover_instance = mover
        return mover

    def recover_moves(self) -> int:
        """Resolve study moves a crash interrupted; see :meth:`Mover.recover`."""
        return self._mover().recover()  # type: ignore[no-any-return]

    def move_study(self, study_uid: str, target: str) -> MoveOutcome:
        """Move a study to another tier; see :meth:`Mover.move_study`."""
        check_uid(study_uid, "StudyInstanceUID")
        return self._mover().move_study(study_uid, target)

    def tier_status(self) -> TierStatus:
        """Per-tier figures and open or failed moves; see :meth:`Mover.status`."""
        return self._mover().status()

    # -- lifecycle ----------------------------------------------------------------

    def _policies(self) -> lifecycle.PolicyStore:
        store: lifecycle.PolicyStore | None = getattr(self, "_policy_store", None)
        if store is None:
            store = lifecycle.PolicyStore(self.index)
            self._policy_store = store
        return store

    def get_policy(self) -> lifecycle.Policy:
        """The lifecycle rule set in force."""
        return self._policies().current(list(self.tiers))

    def set_policy(self, text: str) -> lifecycle.Policy:
        """Replace the whole lifecycle rule set (validated first).

        Raises
        ------
        PolicyError
            The rules are malformed; the rule set in force stays.
        """
        policy = self._policies().replace(text, list(self.tiers))
        lk.log_event(
            logger,
            lk.POLICY_SET,
            **{lk.VERSION: policy.version, lk.COUNT: len(policy.rules)},
        )
        return policy

    def note_access(self, study_uid: str, now: dt.datetime | None = None) -> None:
        """Record a read of a study, for ``not_read_for`` rules.

        At most one durable write per study and hour: rules count in days,
        and a write per retrieval would cost an fsync each.
        """
        now = now or dt.datetime.now(dt.UTC)
        noted: dict[str, dt.datetime] = self.__dict__.setdefault("_access_noted", {})
        last = noted.get(study_uid)
        if last is not None and abs(now - last) < ACCESS_GRANULARITY:
            return
        noted[study_uid] = now
        self._policies().note_access(study_uid, now)

    def plan_lifecycle(self, now: dt.datetime | None = None) -> lifecycle.Plan:
        """What a lifecycle run at ``now`` would move; changes nothing."""
        store = self._policies()
        facts = lifecycle.study_facts(self.index, store.last_access())
        return lifecycle.plan_moves(
            store.current(list(self.tiers)),
            facts,
            now or dt.datetime.now(dt.UTC),
            self.settings.get("lifecycle.max_share"),
        )

    def apply_lifecycle(
        self, now: dt.datetime | None = None, confirm: bool = False
    ) -> tuple[lifecycle.Plan, list[MoveOutcome], list[tuple[str, str]]]:
        """Carry out the lifecycle plan at ``now``, one study at a time.

        Changes stored data: studies move between tiers (see
        :meth:`move_study`). A failed move is reported and the run goes on.

        Returns
        -------
        tuple
            The plan, the moves done, and (study UID, error) of failed moves.

        Raises
        ------
        RefusedError
            The plan moves more than ``lifecycle.max_share`` of the archive
            and ``confirm`` is false; nothing was moved.
        """
        plan = self.plan_lifecycle(now)
        if plan.needs_confirmation and not confirm:
            raise RefusedError(
                f"lifecycle run stopped by the guard: it would move "
                f"{len(plan.moves)} studies, {plan.bytes} bytes, "
                f"{plan.share:.1%} of the archive, above lifecycle.max_share "
                f"({plan.max_share:.1%}); nothing was moved. Check the plan with "
                "`dicomvault tier apply --dry-run`, then run it with --confirm"
            )
        done, failed = [], []
        for move in plan.moves:
            try:
                done.append(self.move_study(move.study_uid, move.to_tier))
            except DicomVaultError as err:
                failed.append((move.study_uid, str(err)))
        return plan, done, failed

    # -- deletion and legal holds -------------------------------------------------

    def _deletions(self) -> DeletionJournal:
        journal: DeletionJournal | None = getattr(self, "_deletion_journal", None)
        if journal is None:
            journal = DeletionJournal(self.index.catalog)
            self._deletion_journal = journal
        return journal

    def _patient_id(self, study_uid: str) -> str | None:
        row = (
            self.index.metadata.cursor()
            .execute("SELECT patient_id FROM studies WHERE study_uid = ?", [study_uid])
            .fetchone()
        )
        return str(row[0]) if row and row[0] else None

    def _hold_on(self, study_uid: str) -> dict[str, Any] | None:
        journal = self._deletions()
        hold = journal.hold_on("study", study_uid)
        patient_id = self._patient_id(study_uid)
        if hold is None and patient_id is not None:
            hold = journal.hold_on("patient", patient_id)
        return hold  # type: ignore[no-any-return]

    def add_hold(self, kind: str, value: str, reason: str = "") -> None:
        """Put a study (``kind="study"``) or patient (``"patient"``) under hold.

        A held study is never deleted nor purged, whatever the rules say.
        """
        if kind not in ("study", "patient"):
            raise InvalidInputError(
                f"legal hold kind {kind!r} is unknown; use 'study' or 'patient'"
            )
        self._deletions().add_hold(kind, value, reason, dt.datetime.now(dt.UTC))
        lk.log_event(logger, lk.HOLD_ADDED, **{"kind": kind, lk.REASON: reason})

    def remove_hold(self, kind: str, value: str) -> None:
        """Lift a legal hold.

        Raises
        ------
        NotFoundError
            There is no such hold.
        """
        if not self._deletions().remove_hold(kind, value):
            raise NotFoundError(f"no legal hold on {kind} {value}")
        lk.log_event(logger, lk.HOLD_REMOVED, **{"kind": kind})

    def list_holds(self) -> list[dict[str, Any]]:
        """Every legal hold in force."""
        return self._deletions().holds()  # type: ignore[no-any-return]

    def _members(
        self, level: str, study_uid: str, series_uid: str | None, sop_uid: str | None
    ) -> list[str]:
        members = self.index.catalog.study_members(study_uid)
        if level == "STUDY":
            return [sop for _series, sop in members]
        if level == "SERIES":
            return [sop for series, sop in members if series == series_uid]
        if level == "INSTANCE":
            return [sop for _series, sop in members if sop == sop_uid]
        raise InvalidInputError(
            f"deletion level {level!r} is unknown; use STUDY, SERIES or INSTANCE"
        )

    def delete(
        self,
        level: str,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        reason: str = "",
    ) -> int:
        """Mark a study, series or instance deleted; return how many instances.

        Changes stored data: the instances disappear from retrieval, search
        and SQL at once; their objects stay until :meth:`purge_due` runs
        after ``retention.grace_days``, and :meth:`restore` brings them back
        until then.

        Raises
        ------
        RefusedError
            The study or its patient is under legal hold; nothing changed.
        NotFoundError
            Nothing stored matches.
        """
        check_uid(study_uid, "StudyInstanceUID")
        hold = self._hold_on(study_uid)
        if hold is not None:
            raise RefusedError(
                f"study {study_uid} is under legal hold ({hold['kind']} hold, "
                f"reason: {hold['reason'] or 'none given'}); nothing was deleted. "
                "Lift it with `dicomvault hold remove` first"
            )
        sops = self._members(level, study_uid, series_uid, sop_uid)
        if not sops:
            raise NotFoundError(
                f"nothing stored at level {level} for study {study_uid}"
                + (f", series {series_uid}" if series_uid else "")
                + (f", instance {sop_uid}" if sop_uid else "")
            )

        with self.index._order:
            seq, records = self._deletions().mark(
                sops, reason, dt.datetime.now(dt.UTC), self._patient_id(study_uid) or ""
            )
            self.index.metadata.remove_instances(sops, seq)
        lk.log_event(
            logger,
            lk.INSTANCES_DELETED,
            **{
                lk.STUDY_UID: study_uid,
                "level": level,
                lk.COUNT: len(records),
                lk.BYTES: sum(v.size for r in records for v in r.versions.values()),
                lk.TIER: ",".join(
                    sorted({v.tier for r in records for v in r.versions.values()})
                ),
                lk.REASON: reason,
            },
        )
        return len(records)

    def restore(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> int:
        """Bring back marked instances not yet purged; return how many.

        Raises
        ------
        NotFoundError
            Nothing marked matches (never marked, or already purged).
        """
        sops = [
            sop
            for sop, (record, *_rest) in self._deletions().marked().items()
            if record.study_uid == study_uid
            and (series_uid is None or record.series_uid == series_uid)
            and (sop_uid is None or sop == sop_uid)
        ]
        if not sops:
            raise NotFoundError(
                f"nothing marked deleted in study {study_uid} (never deleted, "
                "or already purged)"
            )
        with self.index._order:
            seq, records = self._deletions().restore(sops)
            for record in records:
                version = record.current_version
                manifest = self.reader.manifest(version)
                self.index.metadata.enqueue(manifest, version.tier, seq)
        self.index.metadata.flush(seq)
        lk.log_event(
            logger,
            lk.INSTANCES_RESTORED,
            **{lk.STUDY_UID: study_uid, lk.COUNT: len(records)},
        )
        return len(records)

    def purge_due(self, now: dt.datetime | None = None) -> int:
        """Remove for good what was marked more than the grace period ago.

        Changes stored data: every object of every version of each due
        instance is deleted from its tier (manifest first) and its mark is
        dropped; nothing of it is left in any tier or index. Held studies
        are skipped. Returns the number of instances purged.
        """
        now = now or dt.datetime.now(dt.UTC)
        grace = dt.timedelta(days=self.settings.get("retention.grace_days"))
        journal = self._deletions()
        by_study: dict[str, list[InstanceRecord]] = {}
        for record, when, _why, patient_id in journal.marked().values():
            held = journal.hold_on("study", record.study_uid) or (
                patient_id and journal.hold_on("patient", patient_id)
            )
            if not held and now - when >= grace:
                by_study.setdefault(record.study_uid, []).append(record)

        purged = 0
        for study_uid, records in by_study.items():
            objects = size = 0
            tiers: set[str] = set()
            for record in records:
                live = self.index.catalog.get(record.sop_instance_uid)
                live_prefixes = (
                    {(v.tier, v.prefix) for v in live.versions.values()}
                    if live
                    else set()
                )
                for version in record.versions.values():
                    if (version.tier, version.prefix) in live_prefixes:
                        continue
                    tier = self.tiers[version.tier]
                    keys = sorted(
                        tier.list(version.prefix),
                        key=lambda k: not k.endswith("manifest.json"),
                    )
                    for key in keys:
                        tier.delete(key)
                    objects += len(keys)
                    size += version.size
                    tiers.add(version.tier)
                journal.forget(record)
                purged += 1
            lk.log_event(
                logger,
                lk.STUDY_PURGED,
                **{
                    lk.STUDY_UID: study_uid,
                    lk.TIER: ",".join(sorted(tiers)),
                    lk.COUNT: len(records),
                    lk.OBJECTS: objects,
                    lk.BYTES: size,
                },
            )
        return purged

    # -- retention ------------------------------------------------------------------

    def set_retention(self, text: str) -> tuple[retention.RetentionRule, ...]:
        """Replace the retention rules as a whole (validated first)."""
        rules = retention.store_rules(self.index.catalog.env, text)
        lk.log_event(
            logger, lk.POLICY_SET, **{"kind": "retention", lk.COUNT: len(rules)}
        )
        return rules  # type: ignore[no-any-return]

    def retention_preview(
        self, now: dt.datetime | None = None
    ) -> list[retention.DueStudy]:
        """The studies the retention rules would delete at ``now``; changes nothing."""
        facts = lifecycle.study_facts(self.index, {})
        return retention.plan_retention(  # type: ignore[no-any-return]
            retention.load_rules(self.index.catalog.env),
            facts,
            now or dt.datetime.now(dt.UTC),
            lambda study_uid: self._hold_on(study_uid) is not None,
        )

    def apply_retention(
        self, now: dt.datetime | None = None, confirm: bool = False
    ) -> list[retention.DueStudy]:
        """Mark deleted every due study not under hold; return those marked.

        Changes stored data: see :meth:`delete` (restorable until the purge).

        Raises
        ------
        RefusedError
            The run would delete more than ``lifecycle.max_share`` of the
            archive's bytes and ``confirm`` is false; nothing was deleted.
        """
        due = [d for d in self.retention_preview(now) if not d.held]
        total = sum(u.bytes for u in self.tier_status().tiers)
        share = sum(d.bytes for d in due) / total if total else 0.0
        limit = self.settings.get("lifecycle.max_share")
        if share > limit and not confirm:
            raise RefusedError(
                f"retention run stopped by the guard: it would delete {len(due)} "
                f"studies, {share:.1%} of the archive, above lifecycle.max_share "
                f"({limit:.1%}); nothing was deleted. Check the list with "
                "`dicomvault retention preview`, then run it with --confirm"
            )
        for study in due:
            self.delete("STUDY", study.study_uid, reason=f"retention rule {study.rule}")
        return due

    # -- warming on read ----------------------------------------------------------

    def _warmer(self) -> Warmer | None:
        warmer: Warmer | None = getattr(self, "_warmer_instance", None)
        promote_from = {
            t.strip() for t in self.settings.get("lifecycle.promote_from").split(",")
        } - {""}
        priors = self.settings.get("lifecycle.prefetch_priors")
        if warmer is None and (promote_from or priors):
            warmer = Warmer(
                self.move_study,
                self.index,
                promote_from,
                self.settings.get("lifecycle.promote_to"),
                priors,
            )
            self._warmer_instance = warmer
        return warmer

    def _after_read(self, record: InstanceRecord) -> None:
        self.note_access(record.study_uid)
        warmer = self._warmer()
        if warmer is not None:
            warmer.on_read(record.study_uid, record.current_version.tier)

    def wait_warming(self) -> None:
        """Return once queued promotions and prefetches have been tried."""
        warmer = self._warmer()
        if warmer is not None:
            warmer.wait_idle()

    # -- analytics ------------------------------------------------------------

    def add_extended_attribute(
        self, attribute: str, vr: str = ""
    ) -> extended.ExtendedAttribute:
        """Add a tag to the index as a column, back-filled for every instance.

        Changes the index (not the stored instances); see
        :func:`dicomvault.archive.index.extended.add_attribute`.
        """
        added = extended.add_attribute(self.index.metadata, attribute, vr)
        lk.log_event(
            logger,
            lk.INDEX_ATTRIBUTE_ADDED,
            **{
                lk.ATTRIBUTE_TAG: added.tag,
                lk.COLUMN: added.column,
                lk.ROWS: added.filled,
                lk.SECONDS: f"{added.seconds:.3f}",
            },
        )
        return added

    def extended_attributes(self) -> list[extended.ExtendedAttribute]:
        """The extended query attributes, in the order they were added."""
        return extended.list_attributes(  # type: ignore[no-any-return]
            self.index.metadata
        )

    def export_parquet(
        self, url: str, storage_options: dict[str, Any] | None = None
    ) -> tuple[list[export.ExportedTable], float]:
        """Write the metadata tables as Parquet; see :mod:`.export`."""
        return export.export_parquet(  # type: ignore[no-any-return]
            self.index.metadata, url, storage_options
        )


_AUDIT_OPEN = threading.Lock()


def clean_spool(spool_dir: Path) -> None:
    """Remove spooled uploads of a previous run (they were never acknowledged)."""
    if not spool_dir.exists():
        return
    for entry in spool_dir.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


__all__ = ["Archive", "DicomVaultError", "Upload", "clean_spool"]
