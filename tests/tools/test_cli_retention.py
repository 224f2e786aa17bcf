"""``dicomvault retention`` and ``dicomvault hold`` against a live server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess, corpus_dir
from tests.tools.test_cli_tier import FILES, study_uid

DICOMVAULT = Path(sys.executable).parent / "dicomvault"


def run(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``dicomvault ARGS --server ADDRESS``."""
    argv = [str(DICOMVAULT), *args, "--server", server.address]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A live server holding the Trio study."""
    with ServerProcess(tmp_path_factory.mktemp("ret") / "data") as proc:
        proc.client().store([corpus_dir() / name for name in FILES])
        yield proc


class TestHoldAndRetentionCommands:
    def test_preview_lists_a_due_study_as_held_while_the_hold_stands(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """hold add, retention set, hold list, hold remove, preview again."""
        rules = tmp_path / "retention.toml"
        rules.write_text('[[rules]]\nname = "short"\nkeep_for = "1d"\n')
        added = run(server, "hold", "add", "--study", study_uid(), "--reason", "audit")
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("1 legal holds\n  study " + study_uid())

        preview = run(server, "retention", "set", str(rules))
        assert preview.returncode == 0, preview.stderr
        assert "1 studies due" in preview.stdout
        assert "rule short (held: kept)" in preview.stdout

        assert run(server, "hold", "remove", "--study", study_uid()).stdout == (
            "0 legal holds\n"
        )
        again = run(server, "retention", "preview")
        assert "rule short" in again.stdout and "held" not in again.stdout

    def test_removing_a_hold_that_does_not_exist_is_not_found(
        self, server: ServerProcess
    ) -> None:
        """NOT_FOUND with the identifiers; exit 1."""
        gone = run(server, "hold", "remove", "--patient", "nobody")
        assert gone.returncode == 1
        assert (
            gone.stderr.strip() == "error: NOT_FOUND: no legal hold on patient nobody"
        )

    def test_bad_retention_rules_and_a_hold_without_target_are_refused(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """INVALID_ARGUMENT with the reason; exit 2 for a missing --study."""
        bad = tmp_path / "bad.toml"
        bad.write_text('[[rules]]\nname = "x"\nkeep_for = "ten years"\n')
        refused = run(server, "retention", "set", str(bad))
        assert refused.returncode == 1
        assert "INVALID_ARGUMENT: retention rule 1 (x) keep_for: bad duration" in (
            refused.stderr
        )
        assert run(server, "hold", "add").returncode == 2


class TestRetentionRun:
    def test_apply_needs_confirm_then_marks_and_purge_waits_for_the_grace(
        self, tmp_path: Path
    ) -> None:
        """Guard, then mark; a purge inside the grace period removes nothing."""
        rules = tmp_path / "retention.toml"
        rules.write_text('[[rules]]\nname = "short"\nkeep_for = "1d"\n')
        with ServerProcess(tmp_path / "data") as server:
            server.client().store([corpus_dir() / name for name in FILES])
            run(server, "retention", "set", str(rules))
            refused = run(server, "retention", "apply")
            assert refused.returncode == 1
            assert "retention run stopped by the guard" in refused.stderr
            done = run(server, "retention", "apply", "--confirm")
            assert done.stdout.startswith("marked 1 studies deleted")
            assert run(server, "retention", "purge").stdout == "purged 0 instances\n"
            assert server.client().tier_status().tiers[0].studies == 0
