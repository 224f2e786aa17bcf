"""Measured figures of every peer, and what failed instead of being measured."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


@dataclass(slots=True)
class Results:
    """Figures by peer name, failures by peer and figure, and skip notes."""

    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def put(self, peer: str, key: str, value: float) -> None:
        self.figures.setdefault(peer, {})[key] = float(value)

    def fail(self, peer: str, key: str, reason: str) -> None:
        self.failures.setdefault(peer, {})[key] = reason

    def note(self, text: str) -> None:
        print(text, flush=True)
        self.notes.append(text)

    def put_latencies(self, peer: str, key: str, seconds: list[float]) -> None:
        """Median and p95 in milliseconds."""
        self.put(peer, f"{key}.median_ms", statistics.median(seconds) * 1e3)
        self.put(peer, f"{key}.p95_ms", percentile(seconds, 0.95) * 1e3)
