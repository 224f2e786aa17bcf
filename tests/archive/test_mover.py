"""Study moves between tiers on local folders and on SeaweedFS, in-process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import IntegrityError, InvalidInputError, NotFoundError
from dicomvault.archive.manifest import ENVELOPE_NAME, FRAMES_NAME, study_prefix
from dicomvault.archive.service import Archive
from dicomvault.tiers import make_key
from tests.s3server import SeaweedServer

# Three studies of the corpus: the Siemens Trio slice in six transfer
# syntaxes (native little and big endian, RLE, JPEG, JPEG-LS, JPEG 2000), the
# secondary captures (RGB, YBR, JPEG baseline, 32-bit two frames), and one CT
# slice stored three times under one SOP Instance UID (three versions).
TRIO = (
    "mr_brain_siemens_trio_implicit_le.dcm",
    "mr_brain_siemens_trio_explicit_be.dcm",
    "mr_brain_siemens_trio_rle.dcm",
    "mr_brain_siemens_trio_jpegll_sv1_bot.dcm",
    "mr_brain_siemens_trio_jpegls_lossless.dcm",
    "mr_brain_siemens_trio_j2k_lossless.dcm",
)
SECONDARY = (
    "sc_rgb_3x3_odd_length.dcm",
    "sc_ybr_full_uncompressed.dcm",
    "sc_jpeg_baseline_ybr422_dcmtk.dcm",
    "sc_rgb_32bit_2frames.dcm",
)
CT_VERSIONS = (
    "ct_wg04_ct1_explicit_le.dcm",
    "ct_wg04_ct1_explicit_be.dcm",
    "ct_wg04_ct1_jpegls_21frags_bot.dcm",
)
# Every direction between three tiers, each once.
ROUTE = ("warm", "cold", "hot", "cold", "warm", "hot")


@dataclass(frozen=True, slots=True)
class Stored:
    """What a test archive holds: each study's files and their checksums."""

    studies: dict[str, list[Path]]
    sha256: dict[Path, str]


def study_uid_of(path: Path) -> str:
    """The Study Instance UID a file claims."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def study_of(stored: Stored, name: str) -> str:
    """The Study Instance UID of a stored corpus file, by file name."""
    return study_uid_of(next(p for p in stored.sha256 if p.name == name))


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_archive(data_dir: Path, config: Path | None = None) -> Archive:
    """An archive that keeps every version of a re-sent SOP Instance UID."""
    settings = load_settings(
        config,
        {"server.data_dir": str(data_dir), "ingest.on_conflict": "version"},
        environ={},
    )
    return Archive.open(settings)


def store_corpus(
    archive: Archive,
    corpus: Path,
    names: tuple[str, ...] = TRIO + SECONDARY + CT_VERSIONS,
) -> Stored:
    """Store corpus files (by default the three studies); return what went in."""
    studies: dict[str, list[Path]] = {}
    sha256: dict[Path, str] = {}
    for name in names:
        path = corpus / name
        archive.store_file(path)
        studies.setdefault(study_uid_of(path), []).append(path)
        sha256[path] = sha256_file(path)
    return Stored(studies, sha256)


def s3_config(tmp_path: Path, seaweed: SeaweedServer, s3_tier_url: str) -> Path:
    """A config with hot on a local folder, warm and cold in one S3 bucket."""
    options = seaweed.storage_options()
    endpoint = options["client_kwargs"]["endpoint_url"]
    s3 = (
        f'key = "{options["key"]}", secret = "{options["secret"]}", '
        f'client_kwargs = {{ endpoint_url = "{endpoint}", region_name = "us-east-1" }}'
    )
    config = tmp_path / "config.toml"
    config.write_text(
        '[tiers.hot]\nurl = "tiers/hot"\nzstd_level = 3\n'
        f'[tiers.warm]\nurl = "{s3_tier_url}/warm"\nzstd_level = 9\n'
        f"storage_options = {{ {s3} }}\n"
        f'[tiers.cold]\nurl = "{s3_tier_url}/cold"\nzstd_level = 19\n'
        f"storage_options = {{ {s3} }}\n"
    )
    return config


def retrieved_sha256(archive: Archive, sop_uid: str, version: str = "") -> str:
    """SHA-256 of an instance as the archive returns it."""
    _record, stream = archive.retrieve(sop_uid, version)
    digest = hashlib.sha256()
    for chunk in stream:
        digest.update(chunk)
    return digest.hexdigest()


def assert_study_in(
    archive: Archive, stored: Stored, study_uid: str, tier: str
) -> None:
    """Every version of the study is in ``tier`` alone and reads back bit-exact."""
    members = archive.index.catalog.study_members(study_uid)
    expected = {stored.sha256[p] for p in stored.studies[study_uid]}
    found = set()
    for _series, sop_uid in members:
        record = archive.record(sop_uid)
        for version in record.versions.values():
            assert version.tier == tier
            found.add(retrieved_sha256(archive, sop_uid, version.version))
    assert found == expected
    for name, other in archive.tiers.items():
        keys = list(other.list(study_prefix(study_uid)))
        assert bool(keys) == (name == tier), f"tier {name} holds {len(keys)} objects"


@pytest.fixture
def local_archive(tmp_path: Path, corpus: Path) -> Iterator[tuple[Archive, Stored]]:
    """An archive on the embedded hot, warm and cold folders, with the studies."""
    archive = open_archive(tmp_path / "data")
    stored = store_corpus(archive, corpus)
    yield archive, stored
    archive.close()


class TestMoveOnLocalFolders:
    def test_embedded_tiers_are_hot_warm_cold_folders_with_rising_zstd_levels(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """Without a tier table the archive has three local folders."""
        archive, _stored = local_archive
        tiers = archive.settings.tiers
        assert list(tiers) == ["hot", "warm", "cold"]
        assert [t.zstd_level for t in tiers.values()] == [3, 9, 19]
        assert tiers["cold"].url == str(archive.settings.data_dir / "tiers" / "cold")

    def test_moves_in_every_direction_keep_every_version_bit_exact(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """hot->warm->cold->hot->cold->warm->hot: each step is whole and exact."""
        archive, stored = local_archive
        for study_uid in stored.studies:
            assert_study_in(archive, stored, study_uid, "hot")
            for target in ROUTE:
                archive.move_study(study_uid, target)
                assert_study_in(archive, stored, study_uid, target)
        assert archive.verify().problems == []

    def test_move_reports_versions_objects_and_bytes(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """The three versions of the CT slice move together and are counted."""
        archive, stored = local_archive
        ct_study = study_of(stored, CT_VERSIONS[0])
        outcome = archive.move_study(ct_study, "cold")
        assert (outcome.from_tiers, outcome.to_tier, outcome.versions) == (
            ("hot",),
            "cold",
            3,
        )
        assert outcome.objects > 6 and outcome.bytes > 0
        again = archive.move_study(ct_study, "cold")
        assert (again.versions, again.objects, again.from_tiers) == (0, 0, ())

    def test_native_frames_are_recompressed_and_bitstreams_copied_as_they_are(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """Cold gets zstd 19 for native frames; frame SHA-256s stay the same."""
        archive, stored = local_archive
        trio = study_of(stored, TRIO[0])
        before = {}
        for _series, sop_uid in archive.index.catalog.study_members(trio):
            version = archive.record(sop_uid).current_version
            before[sop_uid] = archive.reader.manifest(version)
        archive.move_study(trio, "cold")
        cold = archive.tiers["cold"]
        for sop_uid, old in before.items():
            version = archive.record(sop_uid).current_version
            new = archive.reader.manifest(version)
            assert new.frames["sha256"] == old.frames["sha256"]
            old_objects = {o["key"]: o["sha256"] for o in old.objects}
            new_objects = {o["key"]: o["sha256"] for o in new.objects}
            assert new_objects[ENVELOPE_NAME] == old_objects[ENVELOPE_NAME]
            meta = json.loads(
                cold.read_bytes(make_key(version.prefix, FRAMES_NAME, "zarr.json"))
            )
            if old.frames["kind"] == "native":
                assert '"level": 19' in json.dumps(meta)
                assert new_objects != old_objects
            else:
                assert new_objects == old_objects

    def test_unknown_tier_is_refused_and_changes_nothing(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """A mistyped tier name names the configured tiers."""
        archive, stored = local_archive
        study_uid = next(iter(stored.studies))
        with pytest.raises(
            InvalidInputError,
            match=rf"^cannot move study {study_uid}: unknown tier 'cool'; "
            "configured tiers are hot, warm, cold$",
        ):
            archive.move_study(study_uid, "cool")
        assert_study_in(archive, stored, study_uid, "hot")

    def test_unknown_study_is_not_found(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """A study UID with no instances is a NotFoundError."""
        archive, _stored = local_archive
        with pytest.raises(
            NotFoundError, match=r"^no study with Study Instance UID 1\.2\.3\.4$"
        ):
            archive.move_study("1.2.3.4", "cold")

    def test_corrupt_source_object_stops_the_move_and_leaves_the_study_in_place(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """A flipped byte in the source aborts; no copy stays in the target."""
        archive, stored = local_archive
        trio = study_of(stored, TRIO[0])
        _series, sop_uid = archive.index.catalog.study_members(trio)[-1]
        version = archive.record(sop_uid).current_version
        hot = archive.tiers["hot"]
        envelope = Path(hot.path_of(make_key(version.prefix, ENVELOPE_NAME)))  # type: ignore[attr-defined]
        data = bytearray(envelope.read_bytes())
        data[200] ^= 0xFF
        envelope.chmod(0o644)
        envelope.write_bytes(bytes(data))

        with pytest.raises(
            IntegrityError,
            match=rf"^object {version.prefix}/envelope\.bin in tier hot has sha256 "
            r"[0-9a-f]{64}, expected [0-9a-f]{64}; the study was not moved; "
            r"run `dicomvault verify`$",
        ):
            archive.move_study(trio, "warm")

        assert list(archive.tiers["warm"].list(study_prefix(trio))) == []
        assert {v.tier for v in archive.record(sop_uid).versions.values()} == {"hot"}
        status = archive.tier_status()
        assert status.pending_moves == []
        assert [m["study_uid"] for m in status.failed_moves] == [trio]

    def test_tier_status_counts_studies_instances_and_bytes_per_tier(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """After one move, status splits the figures between hot and cold."""
        archive, stored = local_archive
        trio_files = [p for p in stored.sha256 if p.name in TRIO]
        archive.move_study(study_uid_of(trio_files[0]), "cold")
        usage = {u.tier: u for u in archive.tier_status().tiers}
        assert (usage["cold"].studies, usage["cold"].instances) == (1, 6)
        assert usage["cold"].bytes == sum(p.stat().st_size for p in trio_files)
        assert (usage["hot"].studies, usage["hot"].instances) == (2, 7)
        assert (usage["warm"].studies, usage["warm"].instances) == (0, 0)

    def test_sql_sees_the_new_tier_after_a_move(
        self, local_archive: tuple[Archive, Stored]
    ) -> None:
        """The metadata index follows the move."""
        archive, stored = local_archive
        trio = study_of(stored, TRIO[0])
        archive.move_study(trio, "warm")
        statement = f"SELECT DISTINCT tier FROM instances WHERE study_uid = '{trio}'"
        rows = [row for batch in archive.sql(statement) for row in batch.rows]
        assert rows == [("warm",)] or rows == [["warm"]]


class TestMoveOnSeaweedFS:
    def test_moves_in_every_direction_between_local_and_s3_are_bit_exact(
        self, tmp_path: Path, corpus: Path, seaweed: SeaweedServer, s3_tier_url: str
    ) -> None:
        """hot (local) and warm, cold (S3): every direction, exact after each.

        The Trio study alone: six transfer syntaxes, native and compressed.
        """
        archive = open_archive(
            tmp_path / "data", s3_config(tmp_path, seaweed, s3_tier_url)
        )
        try:
            stored = store_corpus(archive, corpus, TRIO)
            for study_uid in stored.studies:
                for target in ROUTE:
                    archive.move_study(study_uid, target)
                    assert_study_in(archive, stored, study_uid, target)
            assert archive.verify().problems == []
        finally:
            archive.close()
