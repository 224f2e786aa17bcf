"""Ratios, the table, the JSON file and the chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicomvault.tools.bench.report import (
    advantage,
    build_rows,
    format_table,
    write_chart,
    write_json,
)
from dicomvault.tools.bench.results import Results, percentile


def sample() -> Results:
    results = Results()
    results.put("dicomvault", "qido.modality.median_ms", 10.0)
    results.put("orthanc", "qido.modality.median_ms", 40.0)
    results.put("dicomvault", "stow.ct.c4.instances_per_s", 150.0)
    results.put("orthanc", "stow.ct.c4.instances_per_s", 75.0)
    results.put("orthanc", "qido.modality.matches", 17)
    results.fail("orthanc", "wado.frames.mr_j2k.explicit_le", "frame 1: HTTP 500")
    results.put("dicomvault", "grpc.get_frames.mr.stored.mb_per_s", 600.0)
    results.put("bare-grpc", "grpc.get_frames.mr.stored.mb_per_s", 800.0)
    return results


class TestAdvantage:
    @pytest.mark.parametrize(
        ("figure", "ours", "theirs", "expected"),
        [
            ("qido.x.median_ms", 10.0, 40.0, 4.0),
            ("stow.ct.c4.instances_per_s", 150.0, 75.0, 2.0),
            ("server.peak_rss_bytes", 200.0, 100.0, 0.5),
            ("qido.x.matches", 3.0, 3.0, None),
            ("qido.x.median_ms", None, 40.0, None),
        ],
    )
    def test_above_one_always_means_dicomvault_did_better(
        self, figure: str, ours: float | None, theirs: float | None, expected: float
    ) -> None:
        """Times and sizes divide the peer by us, rates us by the peer."""
        assert advantage(figure, ours, theirs) == expected


class TestReport:
    def test_rows_pair_dicomweb_with_orthanc_and_get_frames_with_bare_grpc(
        self,
    ) -> None:
        """Each row names the peer its figure is compared with."""
        rows = {r.figure: r for r in build_rows(sample())}
        assert rows["qido.modality.median_ms"].peer == "orthanc"
        assert rows["qido.modality.median_ms"].ratio == 4.0
        assert rows["grpc.get_frames.mr.stored.mb_per_s"].peer == "bare-grpc"
        assert rows["grpc.get_frames.mr.stored.mb_per_s"].ratio == 0.75

    def test_failed_figure_is_listed_with_its_reason_not_a_number(self) -> None:
        """A failure shows in the table as a note, never as a value."""
        rows = build_rows(sample())
        failed = [r for r in rows if r.figure == "wado.frames.mr_j2k.explicit_le"]
        assert failed[0].other is None and failed[0].ratio is None
        table = format_table(rows)
        assert (
            "wado.frames.mr_j2k.explicit_le: orthanc failed: frame 1: HTTP 500" in table
        )

    def test_json_and_png_are_written(self, tmp_path: Path) -> None:
        """The JSON holds figures, failures and rows; the chart is a PNG."""
        results = sample()
        rows = build_rows(results)
        write_json(tmp_path / "b.json", results, rows, {"mode": "quick"})
        document = json.loads((tmp_path / "b.json").read_text())
        assert document["mode"] == "quick"
        assert document["figures"]["orthanc"]["qido.modality.median_ms"] == 40.0
        assert {"figure", "peer", "dicomvault", "peer_value", "advantage"} <= set(
            document["rows"][0]
        )
        assert write_chart(tmp_path / "b.png", rows, "test")
        assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_no_chart_when_nothing_was_compared(self, tmp_path: Path) -> None:
        """Without any ratio there is nothing to draw, and no file."""
        assert not write_chart(tmp_path / "b.png", [], "empty")
        assert not (tmp_path / "b.png").exists()


class TestPercentile:
    def test_nearest_rank_of_twenty_values(self) -> None:
        """p95 of 1..20 is 19, the median rank of 1..3 is 2."""
        assert percentile([float(v) for v in range(20, 0, -1)], 0.95) == 19.0
        assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
