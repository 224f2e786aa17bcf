"""The lifecycle scheduler: applies the lifecycle rules on an interval.

A scheduled run never confirms: when the guard stops it, it logs what it
would have done and waits for an operator (``dicomvault tier apply
--confirm``). One run at a time; a run that fails is logged and the next one
starts on time.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import DicomVaultError, RefusedError

if TYPE_CHECKING:
    from dicomvault.archive.service import Archive

logger = logging.getLogger(__name__)


class LifecycleScheduler:
    """A daemon thread calling ``archive.apply_lifecycle`` every interval.

    Parameters
    ----------
    archive
        The open archive.
    interval_seconds
        Seconds between the end of one run and the start of the next; 0
        means the scheduler does nothing.
    """

    def __init__(self, archive: Archive, interval_seconds: float):
        self.archive = archive
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def start_for(cls, archive: Archive) -> LifecycleScheduler:
        """Start the scheduler the settings ask for (none when the interval is 0)."""
        scheduler = cls(archive, archive.settings.get("lifecycle.interval_seconds"))
        if scheduler.interval_seconds > 0:
            scheduler._thread = threading.Thread(
                target=scheduler._loop, name="lifecycle", daemon=True
            )
            scheduler._thread.start()
        return scheduler

    def stop(self) -> None:
        """Stop after the run in progress, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.run_once()

    def run_once(self) -> None:
        """One scheduled run: apply the rules, or log why it stopped."""
        try:
            plan, done, failed = self.archive.apply_lifecycle(confirm=False)
        except RefusedError as err:
            lk.log_event(
                logger, lk.LIFECYCLE_GUARD_STOPPED, logging.WARNING, **{lk.REASON: err}
            )
            return
        except DicomVaultError as err:
            lk.log_event(logger, lk.LIFECYCLE_FAILED, logging.ERROR, **{lk.ERROR: err})
            return
        if plan.moves:
            lk.log_event(
                logger,
                lk.LIFECYCLE_APPLIED,
                **{
                    lk.VERSION: plan.policy_version,
                    lk.COUNT: len(done),
                    "failed": len(failed),
                    lk.BYTES: sum(o.bytes for o in done),
                },
            )
