"""Warming on read: promotion of studies read on a cold tier, and prefetch.

When a study is read from one of the ``lifecycle.promote_from`` tiers, it
is moved to ``lifecycle.promote_to`` in the background; with
``lifecycle.prefetch_priors`` = N, the same read also warms the patient's N
previous studies (by StudyDate), so a reader comparing priors does not wait
on cold storage. Moves run one at a time on one worker thread, through the
same crash-safe mover as every other move; a read never waits for them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import DicomVaultError

if TYPE_CHECKING:
    from dicomvault.archive.index import Index
    from dicomvault.archive.mover import MoveOutcome

logger = logging.getLogger(__name__)

_PRIORS_SQL = (
    "SELECT prior.study_uid FROM studies AS this JOIN studies AS prior "
    "ON prior.patient_key = this.patient_key AND prior.study_uid <> this.study_uid "
    "AND prior.study_date < this.study_date "
    "WHERE this.study_uid = ? ORDER BY prior.study_date DESC LIMIT ?"
)


class Warmer:
    """Queues promotions and prefetches; one daemon thread carries them out.

    Parameters
    ----------
    move
        The archive's ``move_study``.
    index
        For the tiers of a study and the patient's prior studies.
    promote_from
        Tiers whose reads trigger a promotion (empty: none).
    target
        The tier studies are warmed to.
    priors
        How many previous studies of the patient to warm on a read.
    """

    def __init__(
        self,
        move: Callable[[str, str], MoveOutcome],
        index: Index,
        promote_from: set[str],
        target: str,
        priors: int,
    ):
        self.move = move
        self.index = index
        self.promote_from = promote_from
        self.target = target
        self.priors = priors
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="warmer", daemon=True)
        self._thread.start()

    def _tiers_of(self, study_uid: str) -> set[str]:
        tiers: set[str] = set()
        for _series, sop_uid in self.index.catalog.study_members(study_uid):
            record = self.index.catalog.get(sop_uid)
            if record is not None:
                tiers.update(v.tier for v in record.versions.values())
        return tiers

    def _submit(self, study_uid: str, why: str) -> None:
        with self._lock:
            if study_uid in self._queued:
                return
            self._queued.add(study_uid)
        self._queue.put((study_uid, why))

    def on_read(self, study_uid: str, tier: str) -> None:
        """Note a read of a study whose instance came from ``tier``."""
        if tier in self.promote_from:
            self._submit(study_uid, "read")
        if self.priors > 0:
            rows = (
                self.index.metadata.cursor()
                .execute(_PRIORS_SQL, [study_uid, self.priors])
                .fetchall()
            )
            for (prior,) in rows:
                if self._tiers_of(prior) - {self.target}:
                    self._submit(prior, "prefetch")

    def wait_idle(self) -> None:
        """Return once every queued promotion has been tried."""
        self._queue.join()

    def _work(self) -> None:
        while True:
            study_uid, why = self._queue.get()
            try:
                self._warm(study_uid, why)
            finally:
                with self._lock:
                    self._queued.discard(study_uid)
                self._queue.task_done()

    def _warm(self, study_uid: str, why: str) -> None:
        try:
            outcome = self.move(study_uid, self.target)
        except DicomVaultError as err:
            fields: dict[str, Any] = {
                lk.STUDY_UID: study_uid,
                lk.TO_TIER: self.target,
                lk.REASON: why,
                lk.ERROR: type(err).__name__,
            }
            lk.log_event(logger, lk.PROMOTION_FAILED, logging.ERROR, **fields)
            return
        if outcome.versions:
            lk.log_event(
                logger,
                lk.STUDY_PROMOTED,
                **{
                    lk.STUDY_UID: study_uid,
                    lk.FROM_TIER: ",".join(outcome.from_tiers),
                    lk.TO_TIER: self.target,
                    lk.OBJECTS: outcome.objects,
                    lk.BYTES: outcome.bytes,
                    lk.REASON: why,
                },
            )
