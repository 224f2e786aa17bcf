"""The benchmark's output: a text table, a JSON file and a PNG chart of ratios.

Each row pairs dicomvault's figure with the peer's (Orthanc for DICOMweb
rows, a bare grpcio stream for GetFrames rows) and states dicomvault's
advantage: peer/dicomvault for times, sizes and memory, dicomvault/peer for
rates, so above 1 always means dicomvault did better.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomvault.tools.bench.results import Results

LOWER_IS_BETTER = ("_ms", "_bytes", "_over_input", "cpu_seconds", "refused_files")
HIGHER_IS_BETTER = ("_per_s",)
INFORMATIONAL = (".matches", ".input_bytes")


@dataclass(frozen=True, slots=True)
class Row:
    """One figure of dicomvault beside the same figure of its peer."""

    figure: str
    peer: str
    dicomvault: float | None
    other: float | None
    ratio: float | None
    note: str


def direction(figure: str) -> str:
    """``higher``, ``lower`` or ``info``: which way a figure is better."""
    if figure.endswith(INFORMATIONAL):
        return "info"
    if figure.endswith(HIGHER_IS_BETTER):
        return "higher"
    if figure.endswith(LOWER_IS_BETTER):
        return "lower"
    return "info"


def advantage(figure: str, ours: float | None, theirs: float | None) -> float | None:
    """dicomvault's advantage factor, or None when it cannot be stated."""
    way = direction(figure)
    if way == "info" or ours is None or theirs is None:
        return None
    if way == "higher":
        return ours / theirs if theirs else None
    return theirs / ours if ours else None


def build_rows(results: Results) -> list[Row]:
    """Rows for every figure measured or failed on either side, in a fixed order."""
    ours = results.figures.get("dicomvault", {})
    ours_failed = results.failures.get("dicomvault", {})
    rows = []
    for peer in ("orthanc", "bare-grpc"):
        theirs = results.figures.get(peer, {})
        theirs_failed = results.failures.get(peer, {})
        if peer == "orthanc":
            keys = {k for k in [*ours, *theirs] if not k.startswith("grpc.")}
        else:
            keys = {k for k in [*ours, *theirs] if k.startswith("grpc.")}
        failed = {k for k in [*ours_failed, *theirs_failed] if k not in keys}
        if peer == "bare-grpc":
            failed = {k for k in failed if k.startswith("grpc.")}
        else:
            failed = {k for k in failed if not k.startswith("grpc.")}
        for key in sorted(keys | failed):
            note = "; ".join(
                f"{who} failed: {reason}"
                for who, table in (("dicomvault", ours_failed), (peer, theirs_failed))
                for prefix, reason in table.items()
                if key.startswith(prefix)
            )
            a, b = ours.get(key), theirs.get(key)
            against = peer if b is not None or key in theirs_failed else "-"
            rows.append(Row(key, against, a, b, advantage(key, a, b), note))
    return rows


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e6:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def format_table(rows: list[Row]) -> str:
    """A fixed-width text table of all rows, failures written under it."""
    head = f"{'figure':52} {'dicomvault':>14} {'peer':>14} {'advantage':>10}  peer"
    lines = [head, "-" * len(head)]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        lines.append(
            f"{row.figure:52} {_cell(row.dicomvault):>14} {_cell(row.other):>14} "
            f"{ratio:>10}  {row.peer}"
        )
    notes = [f"  {row.figure}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "failures (no figure was taken):", *notes]
    return "\n".join(lines)


def write_json(
    path: Path, results: Results, rows: list[Row], meta: dict[str, Any]
) -> None:
    document = {
        **meta,
        "figures": results.figures,
        "failures": results.failures,
        "notes": results.notes,
        "rows": [
            {
                "figure": r.figure,
                "peer": r.peer,
                "dicomvault": r.dicomvault,
                "peer_value": r.other,
                "advantage": r.ratio,
                "note": r.note,
            }
            for r in rows
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_chart(path: Path, rows: list[Row], title: str) -> bool:
    """A horizontal bar chart of every stated ratio (log scale); False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rated = [r for r in rows if r.ratio is not None and r.ratio > 0]
    if not rated:
        return False
    height = max(3.0, 0.28 * len(rated) + 1.2)
    fig, ax = plt.subplots(figsize=(10, height))
    labels = [f"{r.figure} (vs {r.peer})" for r in rated]
    values = [r.ratio for r in rated if r.ratio is not None]
    colours = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(rated)), values, color=colours)
    ax.set_yticks(range(len(rated)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    low = min(values + [1.0])
    high = max(values + [1.0])
    ax.set_xlim(
        10 ** math.floor(math.log10(low)), 10 ** math.ceil(math.log10(high) + 0.01)
    )
    ax.set_xlabel("dicomvault advantage (above 1: dicomvault better)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
