"""``dicomvault tier``, run as a subprocess against a live server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.server import ServerProcess, corpus_dir

DICOMVAULT = Path(sys.executable).parent / "dicomvault"
FILES = (
    "mr_brain_siemens_trio_implicit_le.dcm",
    "mr_brain_siemens_trio_rle.dcm",
    "mr_brain_siemens_trio_j2k_lossless.dcm",
)
ALL_TO_COLD = '[[rules]]\nname = "all"\nto_tier = "cold"\n'


def tier(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``dicomvault tier ARGS --server ADDRESS``."""
    argv = [str(DICOMVAULT), "tier", *args, "--server", server.address]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def study_uid() -> str:
    """The Study Instance UID of the Trio files."""
    path = corpus_dir() / FILES[0]
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def holding_tiers(server: ServerProcess) -> dict[str, int]:
    """Studies per tier, from TierStatus."""
    return {u.tier: u.studies for u in server.client().tier_status().tiers}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A live server holding the Trio study in hot."""
    with ServerProcess(tmp_path / "data") as proc:
        proc.client().store([corpus_dir() / name for name in FILES])
        yield proc


class TestTierCommand:
    def test_move_and_status_show_the_study_in_its_new_tier(
        self, server: ServerProcess
    ) -> None:
        """`tier move` moves; `tier status` counts it in the target."""
        status = tier(server, "status")
        assert status.returncode == 0, status.stderr
        assert "hot                 1          3" in status.stdout
        moved = tier(server, "move", "--study", study_uid(), "--to", "warm")
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.startswith(f"moved study {study_uid()} from hot to warm: ")
        assert holding_tiers(server) == {"hot": 0, "warm": 1, "cold": 0}
        assert "pending moves: 0" in tier(server, "status").stdout

    def test_move_to_an_unknown_tier_fails_with_the_configured_tiers(
        self, server: ServerProcess
    ) -> None:
        """INVALID_ARGUMENT, exit 1, the study stays."""
        run = tier(server, "move", "--study", study_uid(), "--to", "cool")
        assert run.returncode == 1
        assert run.stderr.strip() == (
            f"error: INVALID_ARGUMENT: cannot move study {study_uid()}: unknown "
            "tier 'cool'; configured tiers are hot, warm, cold"
        )
        assert holding_tiers(server)["hot"] == 1

    def test_policy_set_rejects_bad_rules_and_keeps_the_ones_in_force(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """A bad duration is refused with its reason; get shows version 1."""
        good = tmp_path / "good.toml"
        good.write_text(ALL_TO_COLD)
        bad = tmp_path / "bad.toml"
        bad.write_text('[[rules]]\nname = "x"\nto_tier = "cold"\nnot_read_for = "3x"\n')
        assert tier(server, "policy", "set", str(good)).stdout == (
            "lifecycle rules version 1: all\n"
        )
        run = tier(server, "policy", "set", str(bad))
        assert run.returncode == 1
        assert "rule 1 (x) not_read_for: bad duration '3x'" in run.stderr
        shown = tier(server, "policy", "get").stdout
        assert shown == f"# lifecycle rules version 1\n{ALL_TO_COLD}\n"

    def test_apply_stops_at_the_guard_until_confirmed(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """Moving the whole archive needs --confirm; --dry-run moves nothing."""
        rules = tmp_path / "rules.toml"
        rules.write_text(ALL_TO_COLD)
        tier(server, "policy", "set", str(rules))

        dry = tier(server, "apply", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would move 1 studies" in dry.stdout
        assert "above lifecycle.max_share: applying needs --confirm" in dry.stdout
        refused = tier(server, "apply")
        assert refused.returncode == 1
        assert "FAILED_PRECONDITION: lifecycle run stopped by the guard" in (
            refused.stderr
        )
        assert holding_tiers(server)["hot"] == 1

        done = tier(server, "apply", "--confirm")
        assert done.returncode == 0, done.stderr
        assert "moved 1 studies, 0 failed" in done.stdout
        assert holding_tiers(server) == {"hot": 0, "warm": 0, "cold": 1}


class TestScheduler:
    def test_scheduler_applies_the_rules_on_its_interval(self, tmp_path: Path) -> None:
        """With an interval and the guard at 100 %, the study reaches cold."""
        env = {
            "DICOMVAULT_LIFECYCLE__INTERVAL_SECONDS": "0.5",
            "DICOMVAULT_LIFECYCLE__MAX_SHARE": "1.0",
        }
        with ServerProcess(tmp_path / "data", env=env) as server:
            server.client().store([corpus_dir() / name for name in FILES])
            server.client().set_policy(ALL_TO_COLD)
            deadline = time.monotonic() + 60
            while holding_tiers(server)["cold"] != 1:
                assert time.monotonic() < deadline, "the scheduler moved nothing"
                time.sleep(0.2)
        assert "event=lifecycle.applied version=1 count=1" in (
            server.log_path.read_text()
        )
