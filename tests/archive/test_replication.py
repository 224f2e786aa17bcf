"""Replication to replica regions, the change feed, and repair from replicas."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dicomvault.archive.index import Index
from dicomvault.archive.replication import HANDLERS, CursorStore, Replicator
from dicomvault.proto import archive_pb2, archive_pb2_grpc, replication_pb2
from dicomvault.tiers import LocalTier
from tests.archive.replicas import (
    FAST,
    corpus_files,
    local_objects,
    manifests,
    status,
    wait_caught_up,
    write_config,
)
from tests.s3server import SeaweedServer
from tests.server import ServerProcess

STORED = (archive_pb2.STORED, archive_pb2.STORED_NEW_VERSION)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomvault.tools.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def watch(
    server: ServerProcess,
    from_sequence: int,
    count: int,
    types: list[str] | None = None,
) -> list[int]:
    """Sequence numbers of ``count`` changes from ``from_sequence``.

    With ``types``, the type of each change is appended to it.
    """
    with grpc.insecure_channel(server.address) as channel:
        stream = archive_pb2_grpc.ArchiveStub(channel).WatchChanges(
            replication_pb2.WatchChangesRequest(from_sequence=from_sequence)
        )
        seqs = []
        for change in stream:
            seqs.append(change.sequence)
            if types is not None:
                types.append(change.type)
            if len(seqs) == count:
                stream.cancel()
                break
    return seqs


@pytest.fixture(scope="module")
def two_regions(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[tuple[ServerProcess, Path, dict[str, Path], list[Path]]]:
    """A server with regions east and west (local folders), 20 files stored."""
    root = tmp_path_factory.mktemp("repl")
    primary = root / "primary-hot"
    regions = {"east": root / "east-hot", "west": root / "west-hot"}
    config = write_config(
        root / "dicomvault.toml",
        str(primary),
        {name: (str(path), {}) for name, path in regions.items()},
    )
    files = corpus_files(corpus, 20)
    with ServerProcess(root / "data", config=config, env=FAST) as server:
        client = server.client()
        try:
            results = client.store(files)
        finally:
            client.close()
        assert sum(r.outcome in STORED for r in results) >= 15
        yield server, primary, regions, files


class TestReplicator:
    def test_steady_ingest_reaches_zero_lag_with_every_object_bit_exact(
        self, two_regions: tuple[ServerProcess, Path, dict[str, Path], list[Path]]
    ) -> None:
        """After ingest, both regions hold exactly the primary's objects."""
        server, primary, regions, _files = two_regions
        seconds = wait_caught_up(server)
        print(f"lag back to zero {seconds:.2f} s after ingest")
        expected = local_objects(primary)
        assert expected
        for path in regions.values():
            assert local_objects(path) == expected

    def test_status_shows_no_pending_changes_bytes_or_errors_once_caught_up(
        self, two_regions: tuple[ServerProcess, Path, dict[str, Path], list[Path]]
    ) -> None:
        """`replication status --json` reports zero lag for each region."""
        server = two_regions[0]
        wait_caught_up(server)
        done = cli("replication", "status", "--json", "--server", server.address)
        assert done.returncode == 0, done.stderr
        rows = {r["region"]: r for r in json.loads(done.stdout)}
        assert set(rows) == {"east", "west"}
        for row in rows.values():
            assert row["pending_changes"] == 0
            assert row["pending_bytes"] == 0
            assert row["oldest_pending_age_seconds"] == 0
            assert row["last_error"] == ""
            assert row["cursor"] == row["last_sequence"] > 0


class TestWatchChanges:
    def test_resuming_from_a_sequence_misses_nothing_and_repeats_nothing(
        self,
        two_regions: tuple[ServerProcess, Path, dict[str, Path], list[Path]],
        corpus: Path,
    ) -> None:
        """Read 5, disconnect, resume at 6, then receive live changes."""
        server = two_regions[0]
        last = status(server)["east"].last_sequence
        first = watch(server, 1, 5)
        rest = watch(server, first[-1] + 1, last - 5)
        assert first + rest == list(range(1, last + 1))

        live: list[int] = []
        reader = threading.Thread(
            target=lambda: live.extend(watch(server, last + 1, 2)), daemon=True
        )
        reader.start()
        extra = [p for p in corpus_files(corpus, 40) if p not in two_regions[3]][:2]
        client = server.client()
        try:
            outcomes = [r.outcome for r in client.store(extra)]
        finally:
            client.close()
        reader.join(timeout=30)
        assert outcomes == [archive_pb2.STORED, archive_pb2.STORED]
        assert live == [last + 1, last + 2]

    def test_watch_command_prints_one_json_change_per_line(
        self, two_regions: tuple[ServerProcess, Path, dict[str, Path], list[Path]]
    ) -> None:
        """`dicomvault watch --from 2 --limit 3` prints changes 2, 3 and 4."""
        server = two_regions[0]
        args = ("watch", "--from", "2", "--limit", "3", "--server", server.address)
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        changes = [json.loads(line) for line in done.stdout.splitlines()]
        assert [c["seq"] for c in changes] == [2, 3, 4]
        assert {c["type"] for c in changes} == {"instance.stored"}


class TestRepairFromReplica:
    def test_corrupt_and_deleted_primary_objects_are_restored_bit_exact(
        self, two_regions: tuple[ServerProcess, Path, dict[str, Path], list[Path]]
    ) -> None:
        """verify --repair rewrites a flipped and a deleted object from east."""
        server, primary, regions, _files = two_regions
        wait_caught_up(server)
        before = local_objects(primary)
        envelopes = sorted(k for k in before if k.endswith("envelope.bin"))
        corrupt, deleted = primary / envelopes[0], primary / envelopes[1]
        data = bytearray(corrupt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        corrupt.write_bytes(bytes(data))
        deleted.unlink()

        done = cli("verify", "--repair", "--server", server.address)

        assert done.returncode == 0, done.stdout + done.stderr
        assert "corrupt (repaired)" in done.stdout
        assert "missing (repaired)" in done.stdout
        assert local_objects(primary) == before
        log = server.log_path.read_text()
        assert log.count("event=object.repaired") >= 2
        assert f"key={envelopes[0]} region=east" in log

    def test_a_damaged_object_with_no_good_replica_copy_stays_reported(
        self, two_regions: tuple[ServerProcess, Path, dict[str, Path], list[Path]]
    ) -> None:
        """With every replica copy gone the problem stays unrepaired, with why."""
        server, primary, regions, _files = two_regions
        wait_caught_up(server)
        key = sorted(k for k in local_objects(primary) if k.endswith("envelope.bin"))[2]
        saved = {name: (path / key).read_bytes() for name, path in regions.items()}
        original = (primary / key).read_bytes()
        try:
            for path in regions.values():
                (path / key).unlink()
            (primary / key).unlink()
            done = cli("verify", "--repair", "--server", server.address)
            assert done.returncode == 1
            assert f"missing (found) tier=hot key={key}" in done.stdout
            assert "not repaired: east: " in done.stdout
        finally:
            for name, path in regions.items():
                (path / key).write_bytes(saved[name])
            (primary / key).write_bytes(original)


class TestRegionOutage:
    def test_replica_killed_during_ingest_catches_up_after_restart(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """An S3 region down during ingest holds every object once it returns."""
        with SeaweedServer(extra_args=["-volume.max=100"]) as seaweed:
            config = write_config(
                tmp_path / "dicomvault.toml",
                str(tmp_path / "primary-hot"),
                {"south": ("s3://dv-south/hot", seaweed.storage_options())},
            )
            files = corpus_files(corpus, 12)
            with ServerProcess(tmp_path / "data", config=config, env=FAST) as server:
                client = server.client()
                try:
                    client.store(files[:3])
                    seaweed.crash()
                    results = client.store(files[3:])
                    assert sum(r.outcome in STORED for r in results) >= 5
                    lagging = status(server)["south"]
                    assert lagging.pending_changes > 0
                    assert lagging.pending_bytes > 0
                    wait_for_error(server, "south")
                    seaweed.revive()
                    seconds = wait_caught_up(server)
                finally:
                    client.close()
                print(f"region caught up {seconds:.2f} s after it came back")
                expected = local_objects(tmp_path / "primary-hot")
                fs = seaweed.filesystem()
                found = {
                    key.removeprefix("dv-south/hot/"): hashlib.sha256(
                        fs.cat_file(key)
                    ).hexdigest()
                    for key in fs.find("dv-south/hot/studies")
                }
                assert found == expected
                assert "event=replica.lagging region=south" in (
                    server.log_path.read_text()
                )

    def test_a_region_down_at_start_up_does_not_stop_the_server(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """The server serves; the region reports its error and waits."""
        from tests.server import free_port

        dead = {
            "key": "any",
            "secret": "any",
            "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
        }
        config = write_config(
            tmp_path / "dicomvault.toml",
            str(tmp_path / "primary-hot"),
            {"north": ("s3://dv-north/hot", dead)},
        )
        with ServerProcess(tmp_path / "data", config=config, env=FAST) as server:
            client = server.client()
            try:
                results = client.store(corpus_files(corpus, 1))
            finally:
                client.close()
            assert [r.outcome for r in results] == [archive_pb2.STORED]
            wait_for_error(server, "north")
            north = status(server)["north"]
            # The stored instance, and the audit events of the calls so far.
            assert north.pending_changes >= 1
            assert north.pending_bytes == corpus_files(corpus, 1)[0].stat().st_size
            assert north.last_error.startswith("TierUnavailableError: ")


def wait_for_error(server: ServerProcess, region: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if status(server)[region].last_error:
            return
        time.sleep(0.2)
    raise AssertionError(f"region {region} never reported an error")


def one_local_region(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Folders of tier hot and of region east, and the config naming them."""
    primary, east = tmp_path / "primary-hot", tmp_path / "east-hot"
    config = write_config(
        tmp_path / "dicomvault.toml", str(primary), {"east": (str(east), {})}
    )
    return primary, east, config


class TestPrimaryCrash:
    def test_kill_9_during_replication_loses_and_duplicates_nothing(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """Killed while ingest and replication run, the restart finishes both."""
        primary, east, config = one_local_region(tmp_path)
        files = corpus_files(corpus, 40)
        acked: list[str] = []
        server = ServerProcess(tmp_path / "data", config=config, env=FAST).start()

        def ingest() -> None:
            client = server.client()
            try:
                for path in files:
                    for r in client.store([path]):
                        if r.outcome in STORED:
                            acked.append(r.sop_instance_uid)
            except grpc.RpcError:
                pass  # the server was killed under this upload
            finally:
                client.close()

        try:
            writer = threading.Thread(target=ingest, daemon=True)
            writer.start()
            while status(server)["east"].cursor < 5:
                time.sleep(0.02)
            server.kill()
            writer.join(timeout=60)
            server.start()
            wait_caught_up(server)
            last = status(server)["east"].last_sequence
            types: list[str] = []
            seqs = watch(server, 1, last, types)
        finally:
            server.stop()
        print(f"killed after {len(acked)} of {len(files)} uploads were acknowledged")
        assert 0 < len(acked) < len(files)
        assert seqs == list(range(1, last + 1))
        expected = local_objects(primary)
        # Audit events share the change log; one manifest per stored change.
        assert len(manifests(expected)) == types.count("instance.stored")
        assert local_objects(east) == expected
        held = {prefix.split("/")[3] for prefix in manifests(local_objects(east))}
        assert set(acked) <= held
        assert not [p for p in east.rglob("*") if p.name.startswith(".tmp")]


class TestHandlers:
    def test_a_change_type_without_a_handler_stops_the_cursor_with_an_error(
        self, tmp_path: Path
    ) -> None:
        """An unknown change type is never skipped: the region waits on it."""
        index = Index.open(tmp_path / "index")
        try:
            with index.catalog.env.begin(write=True) as txn:
                index.catalog._append_change(txn, {"type": "study.archived"})
            replicator = Replicator(
                index,
                {"hot": LocalTier("hot", str(tmp_path / "p"))},
                {"east": {"hot": LocalTier("hot", str(tmp_path / "e"))}},
                0.05,
                1.0,
            )
            with pytest.raises(
                NotImplementedError,
                match=r"^no replication handler for change type 'study.archived' "
                r"\(sequence 1\); region east waits here until the server is "
                r"upgraded$",
            ):
                replicator.sync_once("east")
            assert CursorStore(index.catalog).get("east") == 0
        finally:
            index.close()

    def test_a_study_delete_removes_the_study_from_every_replica_tier(
        self, tmp_path: Path
    ) -> None:
        """study.deleted clears the study's objects in the region, manifest first."""
        replica = LocalTier("hot", str(tmp_path / "e"))
        for key in ("a/1/2/v/manifest.json", "a/1/2/v/envelope.bin", "b/1/2/v/x"):
            replica.put_bytes(
                f"studies/{key}",  # type: ignore[arg-type]
                b"x",
                sha256=hashlib.sha256(b"x").hexdigest(),
            )
        change = {"seq": 9, "type": "study.deleted", "study_uid": "a"}
        done = HANDLERS["study.deleted"]({}, {"hot": replica}, change)
        assert done.objects == 2
        assert sorted(replica.list("studies")) == ["studies/b/1/2/v/x"]


class TestScheduledScrub:
    def test_the_scrub_repairs_a_deleted_object_without_being_asked(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """With scrub_interval_seconds set, a lost object comes back by itself."""
        primary, east, config = one_local_region(tmp_path)
        env = {**FAST, "DICOMVAULT_REPLICATION__SCRUB_INTERVAL_SECONDS": "0.5"}
        with ServerProcess(tmp_path / "data", config=config, env=env) as server:
            client = server.client()
            try:
                client.store(corpus_files(corpus, 3))
            finally:
                client.close()
            wait_caught_up(server)
            before = local_objects(primary)
            lost = primary / sorted(before)[0]
            lost.unlink()
            deadline = time.monotonic() + 30
            while not lost.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.2)
            assert local_objects(primary) == before
            assert "event=object.repaired" in server.log_path.read_text()


class TestDeletesReplicate:
    def test_deleted_and_purged_study_leaves_every_replica_and_stays_gone(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """A DICOMweb DELETE, then a purge, clears the study from the region."""
        import pydicom
        import requests

        primary, east, config = one_local_region(tmp_path)
        series = sorted((corpus / "series_mr_brain_ge_t1_mprage").glob("*.dcm"))[:3]
        other = corpus / "ct_wg04_ct1_explicit_le.dcm"
        env = {**FAST, "DICOMVAULT_RETENTION__GRACE_DAYS": "0"}
        with ServerProcess(tmp_path / "data", config=config, env=env) as server:
            client = server.client()
            try:
                client.store([*series, other])
            finally:
                client.close()
            wait_caught_up(server)
            study = str(
                pydicom.dcmread(series[0], stop_before_pixels=True).StudyInstanceUID
            )
            assert any(study in key for key in local_objects(east))

            reply = requests.delete(f"{server.http_url}/studies/{study}", timeout=30)
            assert reply.status_code == 204
            wait_caught_up(server)
            # Marked only: the primary keeps the objects until the purge, so
            # a restore can bring them back; the replicas drop them at once.
            assert not any(study in key for key in local_objects(east))
            assert any(study in key for key in local_objects(primary))

            exe = Path(sys.executable).parent / "dicomvault"
            subprocess.run(
                [str(exe), "retention", "purge", "--server", server.address],
                check=True,
                capture_output=True,
            )
            wait_caught_up(server)
            assert not any(study in key for key in local_objects(east))
            assert local_objects(east) == local_objects(primary)
            assert manifests(local_objects(east))

        # A drill from the region alone restores the archive without the
        # deleted study, with every instance verified.
        drilled = subprocess.run(
            [
                str(exe),
                "dr",
                "drill",
                "--config",
                str(config),
                "--region",
                "east",
                "--target",
                str(tmp_path / "restored"),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert drilled.returncode == 0, drilled.stderr
        report = json.loads(drilled.stdout)
        assert report["mismatches"] == 0
        assert report["instances"] == 1
        restored = {p.as_posix() for p in (tmp_path / "restored").rglob("*")}
        assert not any(study in path for path in restored)
