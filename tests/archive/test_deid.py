"""De-identification (PS3.15 Annex E) over the real corpus.

Every corpus file pydicom can read is de-identified in memory: no value the
profile removes or replaces survives, no private element is left, and the
pixel data element is byte for byte the original.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from dicomvault.archive.config import load_settings
from dicomvault.archive.deid import (
    PROFILE,
    RETAIN_DATES,
    RETAIN_UIDS,
    DeidOptions,
    deidentify,
    keep_private_tags,
    pseudonymous_uid,
)
from dicomvault.archive.errors import NotFoundError
from dicomvault.archive.service import Archive
from dicomvault.tiers import LocalTier
from tests.server import corpus_dir

UID_KEY = b"test de-identification key"
MAX_BYTES = 3 << 20


def _corpus_files() -> list[Path]:
    with open(corpus_dir() / "MANIFEST.csv", newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["pydicom_decodes"] == "yes" and int(r["bytes"]) <= MAX_BYTES
        ]
    return [corpus_dir() / r["file"] for r in rows]


def _values(ds: Dataset) -> Iterator[tuple[str, str]]:
    """Every (keyword, value) in ds and its sequences, as text."""
    for element in ds.iterall():
        if element.VR not in ("SQ", "OB", "OW", "UN") and element.keyword:
            yield element.keyword, str(element.value)


def _removed_values(ds: Dataset, options: frozenset[str]) -> set[tuple[str, str]]:
    """The (keyword, value) pairs the profile must not let through."""
    found = set()
    for keyword, value in _values(ds):
        action, keeper = PROFILE.get(keyword, ("K", ""))
        if action != "K" and not (keeper and keeper in options) and value.strip():
            found.add((keyword, value))
    return found


class TestDeidentifyCorpus:
    """The Basic Profile over every readable corpus file."""

    @pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: p.name)
    def test_no_profile_identifier_survives_and_pixels_are_untouched(
        self, path: Path
    ) -> None:
        """Removed values are gone, private tags dropped, pixel bytes identical."""
        ds = pydicom.dcmread(path, force=True)
        before = _removed_values(ds, frozenset())
        pixels = ds.get("PixelData")

        deidentify(ds, DeidOptions(UID_KEY))

        after = set(_values(ds))
        assert before & after == set()
        assert [e.tag for e in ds.iterall() if e.tag.is_private] == []
        assert ds.get("PixelData") == pixels
        assert ds.PatientIdentityRemoved == "YES"
        # The written header (pixel data aside) holds neither name nor ID;
        # short values are skipped, as they occur by chance in other fields.
        if "PixelData" in ds:
            del ds.PixelData
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        header = out.getvalue()
        for keyword, value in before:
            if keyword in ("PatientName", "PatientID") and len(value) >= 6:
                assert value.encode() not in header


class TestDeidentifyOptions:
    """UIDs, options, private whitelist and burned-in annotation."""

    def _dataset(self) -> Dataset:
        path = next(p for p in _corpus_files() if p.name.startswith("mr_brain"))
        return pydicom.dcmread(path, force=True)

    def test_uids_map_consistently_under_one_key(self) -> None:
        """The same study UID maps to the same new UID for every instance."""
        first, second = self._dataset(), self._dataset()
        study = first.StudyInstanceUID

        deidentify(first, DeidOptions(UID_KEY))
        deidentify(second, DeidOptions(UID_KEY))

        assert first.StudyInstanceUID == second.StudyInstanceUID
        assert first.StudyInstanceUID == pseudonymous_uid(study, UID_KEY)
        assert first.StudyInstanceUID != study
        assert first.StudyInstanceUID.startswith("2.25.")
        assert len(first.StudyInstanceUID) <= 64
        assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID

    def test_another_key_gives_other_uids(self) -> None:
        """A different de-identification key does not link the copies."""
        ds = self._dataset()
        study = ds.StudyInstanceUID

        assert pseudonymous_uid(study, UID_KEY) != pseudonymous_uid(study, b"other")

    def test_retain_uids_and_dates_options_keep_them(self) -> None:
        """With both options the UIDs and the study date stay as they were."""
        ds = self._dataset()
        study, date = ds.StudyInstanceUID, ds.StudyDate
        options = frozenset({RETAIN_UIDS, RETAIN_DATES})

        deidentify(ds, DeidOptions(UID_KEY, options))

        assert (ds.StudyInstanceUID, ds.StudyDate) == (study, date)
        codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113106", "113110"]

    def test_whitelisted_private_tag_is_kept(self) -> None:
        """A private tag on the whitelist survives; the others go."""
        ds = self._dataset()
        private = [e.tag for e in ds if e.tag.is_private and e.tag.element >= 0x1000]
        keep = f"{private[0].group:04X},{private[0].element:04X}"

        deidentify(ds, DeidOptions(UID_KEY, keep_private=keep_private_tags([keep])))

        assert [e.tag for e in ds if e.tag.is_private] == [private[0]]

    def test_burned_in_annotation_and_ultrasound_are_reported(self) -> None:
        """BurnedInAnnotation YES and modality US are reported with a reason."""
        ds = self._dataset()
        ds.BurnedInAnnotation = "YES"
        us = self._dataset()
        us.Modality = "US"

        assert deidentify(ds, DeidOptions(UID_KEY)).burned_in == (
            "BurnedInAnnotation is YES"
        )
        assert deidentify(us, DeidOptions(UID_KEY)).burned_in == (
            "modality US often carries burned-in text"
        )
        assert deidentify(self._dataset(), DeidOptions(UID_KEY)).burned_in == ""


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    archive = Archive.open(
        load_settings(overrides={"server.data_dir": str(tmp_path / "data")}, environ={})
    )
    yield archive
    archive.close()


class TestDeidentifyStudy:
    """A stored study copied de-identified to another tier."""

    def test_study_copy_has_new_uids_no_names_and_the_same_pixels(
        self, archive: Archive, tmp_path: Path
    ) -> None:
        """Each instance lands under pseudonymous UIDs with its pixels intact."""
        files = [p for p in _corpus_files() if p.name.startswith("mr_brain")][:3]
        stored = [archive.store_file(p) for p in files]
        study = stored[0].study_uid
        target = LocalTier("research", tmp_path / "research")

        report = archive.deidentify_study(study, target, DeidOptions(UID_KEY))

        assert report.new_study_uid == pseudonymous_uid(study, UID_KEY)
        in_study = [s for s in stored if s.study_uid == study]
        assert len(report.written) == len({s.sop_instance_uid for s in in_study})
        originals = {
            pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in files
        }
        for key in report.written:
            copy = pydicom.dcmread(io.BytesIO(target.read_bytes(key)))
            source = next(
                ds
                for uid, ds in originals.items()
                if pseudonymous_uid(uid, UID_KEY) == copy.SOPInstanceUID
            )
            assert copy.PixelData == source.PixelData
            assert str(copy.PatientName) == ""
            assert copy.StudyInstanceUID == report.new_study_uid

    def test_unknown_study_is_not_found(self, archive: Archive, tmp_path: Path) -> None:
        """A study with no stored instance raises NotFoundError naming it."""
        target = LocalTier("research", tmp_path / "research")

        with pytest.raises(
            NotFoundError, match="no stored instance has Study Instance UID 1.2.3"
        ):
            archive.deidentify_study("1.2.3", target, DeidOptions(UID_KEY))
        assert list(target.list()) == []
