"""Disaster-recovery drills: a whole archive restored from one replica region."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomvault.proto import archive_pb2
from tests.archive.replicas import (
    FAST,
    corpus_files,
    local_objects,
    manifests,
    wait_caught_up,
    write_config,
)
from tests.server import ServerProcess

STORED = (archive_pb2.STORED, archive_pb2.STORED_NEW_VERSION)
STUDY_SQL = (
    "SELECT study_uid, count(*) AS n FROM instances GROUP BY study_uid "
    "ORDER BY study_uid"
)


def drill(config: Path, region: str, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dicomvault.tools.cli",
            "dr",
            "drill",
            "--config",
            str(config),
            "--region",
            region,
            "--target",
            str(target),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def answers(server: ServerProcess, uids: list[str], tmp: Path) -> dict[str, object]:
    """What a server says: each instance's SHA-256, study search, SQL."""
    client = server.client()
    try:
        sha = {}
        for uid in uids:
            out = tmp / f"{uid}.dcm"
            client.retrieve(uid, out)
            sha[uid] = hashlib.sha256(out.read_bytes()).hexdigest()
            out.unlink()
        studies = client.search(archive_pb2.STUDY, {})
        return {"sha256": sha, "studies": studies, "sql": client.sql(STUDY_SQL)}
    finally:
        client.close()


@pytest.fixture(scope="module")
def primary(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[tuple[ServerProcess, Path, list[str], dict[str, Path]]]:
    """A server replicating every corpus file to regions east and west."""
    root = tmp_path_factory.mktemp("drill")
    regions = {"east": root / "east-hot", "west": root / "west-hot"}
    config = write_config(
        root / "dicomvault.toml",
        str(root / "primary-hot"),
        {name: (str(path), {}) for name, path in regions.items()},
    )
    with ServerProcess(root / "data", config=config, env=FAST) as server:
        client = server.client()
        try:
            results = client.store(corpus_files(corpus, 40, max_bytes=1_100_000))
        finally:
            client.close()
        uids = [r.sop_instance_uid for r in results if r.outcome in STORED]
        assert len(uids) >= 30
        wait_caught_up(server)
        yield server, config, uids, regions


class TestDrill:
    def test_restore_from_a_region_has_no_mismatch_and_serves_the_same_answers(
        self,
        primary: tuple[ServerProcess, Path, list[str], dict[str, Path]],
        tmp_path: Path,
    ) -> None:
        """The restored archive retrieves bit-exact and searches alike."""
        server, config, uids, _regions = primary
        target = tmp_path / "restored"

        done = drill(config, "east", target)

        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        print(
            f"drill: {report['instances']} instances, {report['bytes']} bytes, "
            f"restore {report['restore_seconds']:.2f} s"
        )
        assert report["mismatches"] == 0
        assert report["instances"] == len(uids)
        assert report["missing_vs_primary"] == 0
        assert report["studies"] == len(answers(server, [], tmp_path)["studies"])
        with ServerProcess(target, config=target / "dicomvault.toml") as restored:
            assert answers(restored, uids, tmp_path) == answers(server, uids, tmp_path)

    def test_a_region_that_lags_reports_what_it_misses_as_the_recovery_point(
        self,
        primary: tuple[ServerProcess, Path, list[str], dict[str, Path]],
        tmp_path: Path,
    ) -> None:
        """One version absent from west: missing 1, still no mismatch."""
        server, config, uids, regions = primary
        west = regions["west"]
        lost = sorted(manifests(local_objects(west)))[0]
        shutil.rmtree(west / lost)

        done = drill(config, "west", tmp_path / "restored")

        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["missing_vs_primary"] == 1
        assert report["missing_examples"] == [lost]
        assert report["instances"] == len(uids) - 1
        assert report["mismatches"] == 0

    def test_a_target_that_holds_an_archive_is_refused(
        self,
        primary: tuple[ServerProcess, Path, list[str], dict[str, Path]],
        tmp_path: Path,
    ) -> None:
        """A drill never writes over an existing index."""
        (tmp_path / "index").mkdir()
        done = drill(primary[1], "east", tmp_path)
        assert done.returncode == 2
        assert done.stderr == (
            f"error: target {tmp_path} already holds an archive index; a drill "
            "restores into an empty folder only, choose another --target\n"
        )

    def test_an_unknown_region_is_refused_with_the_known_ones(
        self,
        primary: tuple[ServerProcess, Path, list[str], dict[str, Path]],
        tmp_path: Path,
    ) -> None:
        """The message lists the configured regions."""
        done = drill(primary[1], "north", tmp_path / "t")
        assert done.returncode == 2
        assert done.stderr == (
            "error: no replica region 'north' in the settings (known: east, west); "
            "add a [replicas.NAME] table\n"
        )


class TestDrillAfterDelete:
    def test_a_study_deleted_on_the_primary_stays_deleted_in_the_restore(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """A replicated study.deleted change keeps the study out of a drill."""
        from dicomvault.archive.config import load_settings
        from dicomvault.archive.drill import run_drill
        from dicomvault.archive.errors import DicomVaultError
        from dicomvault.archive.manifest import study_prefix
        from dicomvault.archive.replication import Replicator
        from dicomvault.archive.service import Archive

        config = write_config(
            tmp_path / "dicomvault.toml",
            str(tmp_path / "primary-hot"),
            {"east": (str(tmp_path / "east-hot"), {})},
        )
        settings = load_settings(
            config, {"server.data_dir": str(tmp_path / "data")}, environ={}
        )
        archive = Archive.open(settings)
        try:
            stored = []
            for path in corpus_files(corpus, 8):
                try:
                    stored.append(archive.store_file(path))
                except DicomVaultError:
                    continue  # the corpus holds a few files that are refused
            assert len({s.study_uid for s in stored}) >= 2
            replicator = Replicator(
                archive.index, archive.tiers, archive.replica_tiers(), 0.05, 1.0
            )
            replicator.sync_once("east")
            gone = stored[0].study_uid
            # Stands in for the delete operation of the lifecycle code: the
            # change is logged, then the primary's objects are removed.
            with archive.index.catalog.env.begin(write=True) as txn:
                archive.index.catalog._append_change(
                    txn, {"type": "study.deleted", "study_uid": gone}
                )
            for key in list(archive.tiers["hot"].list(study_prefix(gone))):
                archive.tiers["hot"].delete(key)
            replicator.sync_once("east")
        finally:
            archive.close()

        report = run_drill(settings, "east", str(tmp_path / "restored"))

        remaining = {s.study_uid for s in stored} - {gone}
        assert report.studies == len(remaining)
        assert report.mismatches == 0
        assert report.missing_vs_primary == 0
        assert not list((tmp_path / "east-hot" / "studies").glob(gone))
        assert not list(
            (tmp_path / "restored" / "tiers" / "hot" / "studies").glob(gone)
        )
