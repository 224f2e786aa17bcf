"""Crash safety of study moves: kill -9 a live server at each step of a move.

The server runs with ``debug.pause_move_at`` set to one named step, so the
move stops there for good and logs ``event=move.paused``; the test then
kills the process with SIGKILL, starts a server without the setting on the
same data folder and checks that the study is complete and readable in
exactly one tier, and that ``verify --repair`` finds nothing left over.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import grpc
import pydicom
import pytest

from dicomvault.proto import lifecycle_pb2
from tests.server import ServerProcess

FILES = (
    "mr_brain_siemens_trio_implicit_le.dcm",
    "mr_brain_siemens_trio_explicit_be.dcm",
    "mr_brain_siemens_trio_rle.dcm",
    "mr_brain_siemens_trio_j2k_lossless.dcm",
)
# Where the kill lands, and the tier that must hold the study afterwards:
# before the catalog switch the source counts, after it the target.
STEPS = {
    "copying": "hot",
    "copied": "hot",
    "switched": "cold",
    "deleting": "cold",
}
PAUSE_TIMEOUT = 60.0


def wait_for_line(log: Path, text: str, timeout: float = PAUSE_TIMEOUT) -> None:
    """Return once ``text`` appears in the server log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} did not appear in {log} within {timeout} s")


def tier_files(data_dir: Path, tier: str, study_uid: str) -> list[Path]:
    """Files of a study under one embedded tier folder."""
    root = data_dir / "tiers" / tier / "studies" / study_uid
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


class TestKillDuringMove:
    @pytest.mark.parametrize("step", list(STEPS))
    def test_kill_at_step_leaves_the_study_whole_in_exactly_one_tier(
        self, tmp_path: Path, corpus: Path, step: str
    ) -> None:
        """After kill -9 at the step and a restart, one complete readable copy."""
        data = tmp_path / "data"
        files = [corpus / name for name in FILES]
        study_uid = str(
            pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        )
        expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

        paused = ServerProcess(data, env={"DICOMVAULT_DEBUG__PAUSE_MOVE_AT": step})
        paused.start()
        try:
            client = paused.client()
            results = client.store(files)
            sop_uids = [r.sop_instance_uid for r in results]
            move = client.admin.MoveStudy.future(
                lifecycle_pb2.MoveStudyRequest(study_uid=study_uid, to_tier="cold")
            )
            wait_for_line(
                paused.log_path, f"event=move.paused study_uid={study_uid} step={step}"
            )
        finally:
            paused.kill()
        with pytest.raises(grpc.RpcError):
            move.result(timeout=10)

        with ServerProcess(data) as server:
            client = server.client()
            status = client.tier_status()
            usage = {u.tier: (u.studies, u.instances) for u in status.tiers}
            holder = STEPS[step]
            assert usage[holder] == (1, len(files))
            assert sum(s for s, _i in usage.values()) == 1
            assert list(status.pending_moves) == []

            found = set()
            for sop_uid in sop_uids:
                out = tmp_path / f"{sop_uid}.dcm"
                client.retrieve(sop_uid, out)
                found.add(hashlib.sha256(out.read_bytes()).hexdigest())
            assert found == expected

            repaired = client.verify(True)
            assert [p.kind for p in repaired.problems] == []
            assert list(client.verify(False).problems) == []

        for tier in ("hot", "warm", "cold"):
            assert bool(tier_files(data, tier, study_uid)) == (tier == holder), tier
        log = server.log_path.read_text()
        event = "rolled_back" if holder == "hot" else "rolled_forward"
        assert f"event=move.{event} study_uid={study_uid} to_tier=cold" in log
