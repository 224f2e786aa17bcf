"""Search matching kinds against expectations worked out from the corpus files."""

from __future__ import annotations

import fnmatch
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import InvalidInputError
from dicomvault.archive.service import Archive


@dataclass(frozen=True)
class Stored:
    """What the test expects of one stored instance, read with pydicom."""

    ds: pydicom.Dataset

    def get(self, keyword: str) -> str:
        return str(self.ds.get(keyword, "") or "")


@pytest.fixture(scope="module")
def archive_and_files(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[tuple[Archive, list[Stored]]]:
    data = tmp_path_factory.mktemp("search") / "data"
    settings = load_settings(overrides={"server.data_dir": str(data)}, environ={})
    archive = Archive.open(settings)
    stored = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(corpus.rglob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            uids = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
            if not all(ds.get(k) for k in uids):
                continue  # the archive fills in missing UIDs; no oracle here
            try:
                archive.store_file(path)
            except Exception:  # noqa: BLE001 - rejections are covered elsewhere
                continue
            stored.append(Stored(ds))
    # A file stored twice keeps one version: one entry per SOP instance UID.
    unique = {s.get("SOPInstanceUID"): s for s in stored}
    yield archive, list(unique.values())
    archive.close()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def archive(archive_and_files: tuple[Archive, list[Stored]]) -> Archive:
    return archive_and_files[0]


@pytest.fixture
def files(archive_and_files: tuple[Archive, list[Stored]]) -> list[Stored]:
    return archive_and_files[1]


LEVEL_KEY = {
    "STUDY": ("StudyInstanceUID", "0020000D"),
    "SERIES": ("SeriesInstanceUID", "0020000E"),
    "INSTANCE": ("SOPInstanceUID", "00080018"),
}


def found(archive: Archive, level: str, match: dict[str, str], **kw: object) -> set:
    """Every key the search returns, following the cursor to the end."""
    tag = LEVEL_KEY[level][1]
    keys: list[str] = []
    cursor = ""
    while True:
        page = archive.search(level, match, limit=50, cursor=cursor, **kw)
        keys += [r[tag]["Value"][0] for r in page.results]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert len(keys) == len(set(keys)), "a key was returned twice"
    return set(keys)


def expected(files: list[Stored], level: str, keep: Callable[[Stored], bool]) -> set:
    keyword = LEVEL_KEY[level][0]
    return {f.get(keyword) for f in files if keep(f)}


class TestSingleValueAndUniversal:
    def test_modality_single_value_finds_exactly_the_ct_series(
        self, archive, files
    ) -> None:
        """Modality=CT at series level returns the series of every CT file."""
        want = expected(files, "SERIES", lambda f: f.get("Modality") == "CT")
        assert want and found(archive, "SERIES", {"Modality": "CT"}) == want

    def test_empty_value_is_universal_and_returns_every_study(
        self, archive, files
    ) -> None:
        """An empty value places no constraint (C.2.2.2.3)."""
        want = expected(files, "STUDY", lambda f: True)
        assert found(archive, "STUDY", {"PatientID": ""}) == want

    def test_attribute_beyond_typed_columns_matches_through_json(
        self, archive, files
    ) -> None:
        """SliceThickness, not a typed column, matches from the DICOM JSON."""
        want = expected(
            files,
            "INSTANCE",
            lambda f: (
                f.get("SliceThickness") not in ("", "None")
                and float(f.get("SliceThickness")) == 2.0
            ),
        )
        assert want and found(archive, "INSTANCE", {"SliceThickness": "2"}) == want


class TestWildcards:
    @pytest.mark.parametrize(
        "pattern", ["compressedsamples^*", "COMPRESSEDSAMPLES^C?1", "*^g"]
    )
    def test_person_name_wildcards_ignore_case(self, archive, files, pattern) -> None:
        """'*' and '?' in PatientName match case-insensitively."""
        want = expected(
            files,
            "STUDY",
            lambda f: fnmatch.fnmatchcase(
                f.get("PatientName").lower(), pattern.lower()
            ),
        )
        assert want and found(archive, "STUDY", {"PatientName": pattern}) == want

    def test_text_wildcards_are_case_sensitive(self, archive, files) -> None:
        """A wildcard on a non-name attribute keeps case (C.2.2.2.4)."""
        assert found(archive, "SERIES", {"Modality": "c*"}) == set()
        want = expected(files, "SERIES", lambda f: f.get("Modality").startswith("C"))
        assert want and found(archive, "SERIES", {"Modality": "C*"}) == want


class TestRanges:
    @pytest.mark.parametrize("value", ["120000-130000", "1200-", "-120000", "-1459"])
    def test_study_time_range_open_at_either_end(self, archive, files, value) -> None:
        """StudyTime ranges; a partial upper bound takes in its whole minute."""
        low, high = value.split("-")

        def keep(f: Stored) -> bool:
            t = f.get("StudyTime")
            return (
                bool(t)
                and (not low or t >= low)
                and (not high or t[: len(high)] <= high)
            )

        want = expected(files, "STUDY", keep)
        assert want and found(archive, "STUDY", {"StudyTime": value}) == want

    def test_datetime_range_matches_through_json(self, archive, files) -> None:
        """AcquisitionDateTime 20200101- finds only acquisitions from 2020 on."""
        want = expected(
            files,
            "INSTANCE",
            lambda f: f.get("AcquisitionDateTime") >= "20200101",
        )
        got = found(archive, "INSTANCE", {"AcquisitionDateTime": "20200101-"})
        assert want and got == want

    def test_malformed_time_is_refused(self, archive) -> None:
        """A time that is not digits names the attribute and the value."""
        with pytest.raises(
            InvalidInputError, match="StudyTime value '12h-13h' is not a time HHMMSS"
        ):
            archive.search("STUDY", {"StudyTime": "12h-13h"})


class TestUidListsAndSequences:
    def test_uid_list_returns_exactly_the_listed_instances(
        self, archive, files
    ) -> None:
        """A backslash list of SOP Instance UIDs returns those instances."""
        uids = sorted(f.get("SOPInstanceUID") for f in files)[:3]
        assert found(archive, "INSTANCE", {"SOPInstanceUID": "\\".join(uids)}) == set(
            uids
        )

    def test_sequence_item_attribute_matches_one_level_down(
        self, archive, files
    ) -> None:
        """AnatomicRegionSequence.CodeValue matches inside the sequence items."""

        def codes(f: Stored) -> set[str]:
            return {
                str(i.get("CodeValue", ""))
                for i in f.ds.get("AnatomicRegionSequence", [])
            }

        value = sorted(set().union(*(codes(f) for f in files)) - {""})[0]
        want = expected(files, "INSTANCE", lambda f: value in codes(f))
        got = found(archive, "INSTANCE", {"AnatomicRegionSequence.CodeValue": value})
        assert want and got == want

    def test_sequence_keys_must_match_within_one_item(self, archive, files) -> None:
        """Two keys of one sequence that match different items do not match."""
        f = next(f for f in files if f.ds.get("AnatomicRegionSequence"))
        item = f.ds.AnatomicRegionSequence[0]
        ok = {
            "AnatomicRegionSequence.CodeValue": str(item.CodeValue),
            "AnatomicRegionSequence.CodingSchemeDesignator": str(
                item.CodingSchemeDesignator
            ),
        }
        assert f.get("SOPInstanceUID") in found(archive, "INSTANCE", ok)
        wrong = dict(ok, **{"AnatomicRegionSequence.CodingSchemeDesignator": "NOPE"})
        assert found(archive, "INSTANCE", wrong) == set()

    def test_sequence_key_on_a_non_sequence_is_refused(self, archive) -> None:
        """Modality.CodeValue is refused: Modality is not a sequence."""
        with pytest.raises(InvalidInputError, match="'Modality' is not a sequence"):
            archive.search("INSTANCE", {"Modality.CodeValue": "1"})


class TestResults:
    def test_study_computed_attributes_count_the_stored_files(
        self, archive, files
    ) -> None:
        """NumberOfStudyRelated*, ModalitiesInStudy agree with the stored files."""
        page = archive.search("STUDY", {}, limit=1000)
        for result in page.results:
            study = result["0020000D"]["Value"][0]
            mine = [f for f in files if f.get("StudyInstanceUID") == study]
            assert result["00201208"]["Value"] == [len(mine)]
            assert result["00201206"]["Value"] == [
                len({f.get("SeriesInstanceUID") for f in mine})
            ]
            modalities = sorted({f.get("Modality") for f in mine if f.get("Modality")})
            assert result["00080061"].get("Value", []) == modalities

    def test_series_counts_its_instances(self, archive, files) -> None:
        """NumberOfSeriesRelatedInstances is the number of files of the series."""
        page = archive.search("SERIES", {"Modality": "MR"}, limit=1000)
        for result in page.results:
            series = result["0020000E"]["Value"][0]
            n = sum(1 for f in files if f.get("SeriesInstanceUID") == series)
            assert result["00201209"]["Value"] == [n]

    def test_includefield_of_any_attribute_and_all(self, archive, files) -> None:
        """includefield returns SliceThickness; 'all' returns the whole JSON."""
        f = next(f for f in files if f.get("SliceThickness"))
        uid = f.get("SOPInstanceUID")
        one = archive.search("INSTANCE", {"SOPInstanceUID": uid}, ["SliceThickness"])
        assert float(one.results[0]["00180050"]["Value"][0]) == float(
            f.get("SliceThickness")
        )
        every = archive.search("INSTANCE", {"SOPInstanceUID": uid}, ["all"])
        assert "00100010" in every.results[0] and "00080070" in every.results[0]

    def test_cursor_pages_every_instance_once_with_the_total(
        self, archive, files
    ) -> None:
        """Following next_cursor returns every instance once; total agrees."""
        assert found(archive, "INSTANCE", {}) == {
            f.get("SOPInstanceUID") for f in files
        }
        page = archive.search("INSTANCE", {}, limit=7, count_total=True)
        assert page.total == len(files) and page.next_cursor

    def test_cursor_from_another_search_is_refused(self, archive) -> None:
        """A cursor only continues the search it was issued for."""
        page = archive.search("INSTANCE", {}, limit=2)
        with pytest.raises(InvalidInputError, match="belongs to a different search"):
            archive.search("INSTANCE", {"Modality": "CT"}, cursor=page.next_cursor)
        with pytest.raises(InvalidInputError, match="is not a cursor this server"):
            archive.search("INSTANCE", {}, cursor="garbage")

    def test_patient_level_matches_on_instance_attributes(self, archive, files) -> None:
        """PATIENT level with Modality=SEG returns the patients of SEG files."""
        want = {f.get("PatientID") for f in files if f.get("Modality") == "SEG"}
        page = archive.search("PATIENT", {"Modality": "SEG"}, limit=1000)
        got = {r.get("00100020", {}).get("Value", [""])[0] for r in page.results}
        assert want and got == want


class TestFuzzy:
    def test_misspelt_name_matches_only_when_fuzzy(self, archive, files) -> None:
        """'Lestrad^G' finds Lestrade^G with fuzzy on, nothing with it off."""
        want = expected(files, "STUDY", lambda f: f.get("PatientName") == "Lestrade^G")
        assert want
        assert found(archive, "STUDY", {"PatientName": "Lestrad^G"}) == set()
        assert found(archive, "STUDY", {"PatientName": "Lestrad^G"}, fuzzy=True) >= want
