"""Two-phase deletion, restore, purge and legal holds, on the real corpus."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicomvault.archive.errors import NotFoundError, RefusedError
from dicomvault.archive.lifecycle import PolicyError
from dicomvault.archive.manifest import study_prefix
from dicomvault.archive.service import Archive
from tests.archive.test_mover import (
    SECONDARY,
    TRIO,
    Stored,
    open_archive,
    retrieved_sha256,
    store_corpus,
    study_of,
)

AFTER_GRACE = dt.timedelta(days=31)


@pytest.fixture
def archive(tmp_path: Path, corpus: Path) -> Iterator[tuple[Archive, Stored]]:
    """The Trio and secondary-capture studies in hot."""
    opened = open_archive(tmp_path / "data")
    stored = store_corpus(opened, corpus, TRIO + SECONDARY)
    yield opened, stored
    opened.close()


def sql_count(archive: Archive, study_uid: str) -> int:
    """Instances of a study the SQL index shows."""
    statement = f"SELECT count(*) FROM instances WHERE study_uid = '{study_uid}'"
    return int(next(iter(archive.sql(statement))).rows[0][0])


def objects_of(archive: Archive, study_uid: str) -> int:
    """Objects of a study in every tier."""
    return sum(
        len(list(t.list(study_prefix(study_uid)))) for t in archive.tiers.values()
    )


class TestDeleteAndRestore:
    def test_deleted_study_is_invisible_at_once_but_its_objects_stay(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Retrieve, search and SQL stop seeing it; the tier keeps the bytes."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        sop_uid = arch.index.catalog.study_members(trio)[0][1]
        assert arch.delete("STUDY", trio, reason="operator request") == 6

        with pytest.raises(
            NotFoundError, match=f"^no instance with SOP Instance UID {sop_uid}$"
        ):
            arch.retrieve(sop_uid)
        assert sql_count(arch, trio) == 0
        assert arch.search("STUDY", {"StudyInstanceUID": trio}).results == []
        assert objects_of(arch, trio) > 0
        assert sql_count(arch, study_of(stored, SECONDARY[0])) == 4

    def test_restore_brings_the_study_back_bit_exact(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Until the purge a deletion can be undone whole."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        arch.delete("STUDY", trio, reason="mistake")
        assert arch.restore(trio) == 6
        found = {
            retrieved_sha256(arch, sop)
            for _s, sop in arch.index.catalog.study_members(trio)
        }
        assert found == {stored.sha256[p] for p in stored.studies[trio]}
        assert sql_count(arch, trio) == 6

    def test_instance_level_delete_hides_only_that_instance(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """One SOP Instance UID goes; its siblings stay."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        series_uid, sop_uid = arch.index.catalog.study_members(trio)[0]
        assert arch.delete("INSTANCE", trio, series_uid, sop_uid, reason="dup") == 1
        assert sql_count(arch, trio) == 5

    def test_unknown_level_and_empty_match_are_refused(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Bad input names the problem; nothing changes."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        with pytest.raises(ValueError, match="^deletion level 'PATIENT' is unknown"):
            arch.delete("PATIENT", trio)
        with pytest.raises(
            NotFoundError, match=r"^nothing stored at level STUDY for study 1\.2\.3$"
        ):
            arch.delete("STUDY", "1.2.3")
        assert sql_count(arch, trio) == 6


class TestPurge:
    def test_purge_waits_for_the_grace_period_then_leaves_nothing(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Day 10: nothing purged; day 31: no object, record or row is left."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        arch.delete("STUDY", trio, reason="retention")
        now = dt.datetime.now(dt.UTC)
        assert arch.purge_due(now + dt.timedelta(days=10)) == 0
        assert arch.purge_due(now + AFTER_GRACE) == 6

        assert objects_of(arch, trio) == 0
        assert arch.index.catalog.study_members(trio) == []
        assert sql_count(arch, trio) == 0
        assert arch.verify().problems == []
        with pytest.raises(NotFoundError, match="already purged"):
            arch.restore(trio)


class TestLegalHold:
    def test_held_study_cannot_be_deleted(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """RefusedError with the reason; the study stays visible."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        arch.add_hold("study", trio, "litigation 42")
        with pytest.raises(
            RefusedError,
            match=rf"^study {trio} is under legal hold \(study hold, reason: "
            r"litigation 42\); nothing was deleted\. Lift it with "
            r"`dicomvault hold remove` first$",
        ):
            arch.delete("STUDY", trio, reason="retention")
        assert sql_count(arch, trio) == 6

    def test_patient_hold_covers_every_study_of_the_patient(
        self, archive: tuple[Archive, Stored], corpus: Path
    ) -> None:
        """A hold on the Patient ID blocks deleting the patient's study."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        patient_id = str(
            pydicom.dcmread(corpus / TRIO[0], stop_before_pixels=True).PatientID
        )
        arch.add_hold("patient", patient_id, "")
        with pytest.raises(RefusedError, match=r"\(patient hold, reason: none given\)"):
            arch.delete("STUDY", trio)
        assert [h["kind"] for h in arch.list_holds()] == ["patient"]

    def test_hold_added_after_deletion_blocks_the_purge_until_lifted(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """A retention run next to a hold: the held study survives the purge."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        secondary = study_of(stored, SECONDARY[0])
        arch.delete("STUDY", trio, reason="retention")
        arch.delete("STUDY", secondary, reason="retention")
        arch.add_hold("study", trio, "late request")
        later = dt.datetime.now(dt.UTC) + AFTER_GRACE
        assert arch.purge_due(later) == 4
        assert objects_of(arch, trio) > 0 and objects_of(arch, secondary) == 0

        arch.remove_hold("study", trio)
        with pytest.raises(NotFoundError, match=f"^no legal hold on study {trio}$"):
            arch.remove_hold("study", trio)
        assert arch.purge_due(later) == 6
        assert objects_of(arch, trio) == 0
        digest = hashlib.sha256(b"").hexdigest()
        assert digest not in stored.sha256.values()


class TestRetentionRules:
    def test_preview_lists_due_studies_and_marks_held_ones(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """A 1-year MR rule: the Trio study (2014) is due; under hold it is held."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        arch.set_retention(
            '[[rules]]\nname = "mr-1y"\nkeep_for = "1y"\nmodality = "MR"\n'
        )
        due = arch.retention_preview()
        assert [(d.study_uid, d.rule, d.held) for d in due] == [(trio, "mr-1y", False)]
        arch.add_hold("study", trio, "audit")
        assert [d.held for d in arch.retention_preview()] == [True]

    def test_retention_run_next_to_a_hold_deletes_only_the_unheld_study(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Both studies due; the held one stays visible, the other is marked."""
        arch, stored = archive
        trio = study_of(stored, TRIO[0])
        secondary = study_of(stored, SECONDARY[0])
        arch.set_retention('[[rules]]\nname = "all"\nkeep_for = "1d"\n')
        arch.add_hold("study", trio, "audit")
        with pytest.raises(RefusedError, match="^retention run stopped by the guard"):
            arch.apply_retention()
        done = arch.apply_retention(confirm=True)
        assert [d.study_uid for d in done] == [secondary]
        assert (sql_count(arch, trio), sql_count(arch, secondary)) == (6, 0)

    def test_bad_retention_rules_are_rejected_with_their_reason(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Unknown attribute and missing keep_for are refused."""
        arch, _stored = archive
        with pytest.raises(
            PolicyError,
            match=r"^retention rule 1 \(x\): unknown attribute 'keep'; known: ",
        ):
            arch.set_retention('[[rules]]\nname = "x"\nkeep = "1y"\n')
        with pytest.raises(
            PolicyError,
            match=r"^retention rule 1 \(x\) keep_for: bad duration '1 year'",
        ):
            arch.set_retention('[[rules]]\nname = "x"\nkeep_for = "1 year"\n')
