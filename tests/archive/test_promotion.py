"""Promotion of studies read on cold, and prefetch of a patient's priors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomvault.archive.config import ConfigError, load_settings
from dicomvault.archive.service import Archive
from tests.archive.test_mover import retrieved_sha256, study_uid_of

# Patient 1CT1 has three studies: 2003-12-08, 2004-01-19 and 2004-08-26.
OLDEST = "ct_wg04_ct1_rle_4frags_one_frame.dcm"
MIDDLE = "pm_float32.dcm"
NEWEST = "ct_wg04_ct1_explicit_le.dcm"


def tiers_of(archive: Archive, study_uid: str) -> set[str]:
    """The tiers holding any version of a study."""
    return {
        v.tier
        for _series, sop in archive.index.catalog.study_members(study_uid)
        for v in archive.record(sop).versions.values()
    }


@pytest.fixture
def archive(tmp_path: Path, corpus: Path) -> Iterator[Archive]:
    """The patient's three studies, all moved to cold; promotion and 1 prior."""
    settings = load_settings(
        None,
        {
            "server.data_dir": str(tmp_path / "data"),
            "lifecycle.promote_from": "cold",
            "lifecycle.prefetch_priors": 1,
        },
        environ={},
    )
    opened = Archive.open(settings)
    for name in (OLDEST, MIDDLE, NEWEST):
        opened.store_file(corpus / name)
        opened.move_study(study_uid_of(corpus / name), "cold")
    yield opened
    opened.close()


class TestWarmOnRead:
    def test_read_on_cold_promotes_the_study_and_prefetches_one_prior(
        self, archive: Archive, corpus: Path
    ) -> None:
        """The newest study and the one before go hot; the oldest stays cold."""
        newest = study_uid_of(corpus / NEWEST)
        sop_uid = archive.index.catalog.study_members(newest)[0][1]
        assert len(retrieved_sha256(archive, sop_uid)) == 64
        archive.wait_warming()
        assert tiers_of(archive, newest) == {"hot"}
        assert tiers_of(archive, study_uid_of(corpus / MIDDLE)) == {"hot"}
        assert tiers_of(archive, study_uid_of(corpus / OLDEST)) == {"cold"}

    def test_read_on_a_tier_not_listed_promotes_nothing(
        self, archive: Archive, corpus: Path
    ) -> None:
        """A study on warm is read where it is; only its prior is prefetched."""
        middle = study_uid_of(corpus / MIDDLE)
        archive.move_study(middle, "warm")
        sop_uid = archive.index.catalog.study_members(middle)[0][1]
        retrieved_sha256(archive, sop_uid)
        archive.wait_warming()
        assert tiers_of(archive, middle) == {"warm"}
        assert tiers_of(archive, study_uid_of(corpus / OLDEST)) == {"hot"}


class TestWarmSettings:
    def test_unknown_promotion_tier_is_refused_at_load(self) -> None:
        """A mistyped tier name stops the start."""
        with pytest.raises(
            ConfigError,
            match=r"^setting lifecycle\.promote_from: 'cool' is not a configured "
            r"tier \(hot, warm, cold\)$",
        ):
            load_settings(None, {"lifecycle.promote_from": "cool"}, environ={})
