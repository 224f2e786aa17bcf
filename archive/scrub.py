"""The scheduled scrub: verify, then repair from replicas, at a set interval.

Changes stored data: each pass runs ``verify`` and replaces corrupt or
missing objects from a replica region (:mod:`dicomvault.archive.repair`).
Leftovers of interrupted writes are only reported, since a pass may run
while uploads are in flight. Off when
``replication.scrub_interval_seconds`` is 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class Scrubber:
    """Runs ``scrub`` every ``interval`` seconds in a thread of its own."""

    def __init__(self, scrub: Callable[[], Any], interval: float):
        self.scrub = scrub
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="scrub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.scrub()
            except Exception:  # noqa: BLE001 - the next pass tries again
                logger.exception(
                    "scheduled scrub failed; next pass in %s s", self.interval
                )
