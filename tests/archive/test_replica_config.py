"""Replica regions in the settings file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomvault.archive.config import ConfigError, load_settings


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "dicomvault.toml"
    # One primary tier (hot) unless the text names its own.
    if "[tiers." not in text:
        text = '[tiers.hot]\nurl = "hot"\n' + text
    path.write_text(text)
    return load_settings(path, environ=environ or {})


class TestReplicaConfig:
    def test_a_region_gets_a_tier_for_each_primary_tier(self, tmp_path: Path) -> None:
        """Relative replica URLs resolve inside the data folder."""
        settings = load(
            tmp_path,
            '[server]\ndata_dir = "d"\n[replicas.east.tiers.hot]\nurl = "east/hot"\n',
        )
        region = settings.replicas["east"]
        assert region.tiers["hot"].url == str((Path("d") / "east/hot").resolve())

    def test_a_region_without_a_primary_tier_is_refused(self, tmp_path: Path) -> None:
        """Every primary tier needs a counterpart in every region."""
        with pytest.raises(
            ConfigError,
            match=r"replica region 'east' has no tier for primary tier\(s\) "
            r"\['hot'\]; add \[replicas.east.tiers.hot\]$",
        ):
            load(tmp_path, '[replicas.east.tiers.warm]\nurl = "/w"\n')

    def test_unknown_keys_in_a_region_are_refused(self, tmp_path: Path) -> None:
        """A typo in a region table is an error, not ignored."""
        with pytest.raises(
            ConfigError,
            match=r"replica region 'east' has unknown keys \['lag'\]; "
            r"only 'tiers' is allowed$",
        ):
            load(
                tmp_path,
                '[replicas.east]\nlag = 1\n[replicas.east.tiers.hot]\nurl = "/e"\n',
            )

    def test_a_region_tier_without_a_url_is_refused(self, tmp_path: Path) -> None:
        """The message names the region and the tier."""
        with pytest.raises(
            ConfigError, match=r"replica region 'east' tier 'hot' needs a url$"
        ):
            load(tmp_path, "[replicas.east.tiers.hot]\nstorage_options = {}\n")

    def test_secrets_of_replica_tiers_are_redacted(self, tmp_path: Path) -> None:
        """Keys in a region's storage options never appear in a dump."""
        settings = load(
            tmp_path,
            '[replicas.east.tiers.hot]\nurl = "s3://b/hot"\n'
            'storage_options = { key = "AKIA", secret = "s3cr3t" }\n',
        )
        dump = settings.redacted()["replicas"]
        assert dump == {
            "east": {
                "hot": {
                    "url": "s3://b/hot",
                    "storage_options": {"key": "***", "secret": "***"},
                }
            }
        }

    def test_replication_settings_come_from_the_environment(
        self, tmp_path: Path
    ) -> None:
        """DICOMVAULT_REPLICATION__* sets the replicator's knobs."""
        settings = load(
            tmp_path,
            "",
            {
                "DICOMVAULT_REPLICATION__FAILOVER_READS": "true",
                "DICOMVAULT_REPLICATION__SCRUB_INTERVAL_SECONDS": "3600",
            },
        )
        assert settings.get("replication.failover_reads") is True
        assert settings.get("replication.scrub_interval_seconds") == 3600.0
        assert settings.replicas == {}

    def test_a_negative_scrub_interval_is_refused(self, tmp_path: Path) -> None:
        """0 turns the scrub off; below 0 is a mistake."""
        with pytest.raises(
            ConfigError,
            match=r"setting replication.scrub_interval_seconds from .*: -1.0 "
            r"must be 0 \(off\) or more$",
        ):
            load(tmp_path, "[replication]\nscrub_interval_seconds = -1\n")
