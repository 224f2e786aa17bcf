"""The whole benchmark in quick mode, as ``make bench BENCH_ARGS=--quick`` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dicomvault.tools.bench.peers import ORTHANC_BINARY, ORTHANC_PLUGIN


@pytest.mark.slow
class TestQuickRun:
    def test_quick_run_writes_a_report_without_dicomvault_failures(
        self, tmp_path: Path
    ) -> None:
        """About two minutes: both peers measured, every answer checked."""
        out = tmp_path / "out"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dicomvault.tools.bench",
                "--quick",
                "--out",
                str(out),
                "--cache",
                str(tmp_path / "cache"),
            ],
            check=True,
            timeout=900,
        )
        report = json.loads((out / "bench.json").read_text())
        assert report["mode"] == "quick"
        assert "dicomvault" not in report["failures"]
        assert report["figures"]["bare-grpc"]
        assert (out / "bench.png").exists()
        orthanc_here = ORTHANC_BINARY.exists() and ORTHANC_PLUGIN.exists()
        if os.geteuid() == 0 and orthanc_here:
            assert report["figures"]["orthanc"]["qido.patient_id.matches"] == 1
