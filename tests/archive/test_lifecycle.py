"""Lifecycle rules: validation, durable versioned storage, plan, apply, guard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import RefusedError
from dicomvault.archive.lifecycle import PolicyError, parse_policy
from dicomvault.archive.service import Archive
from tests.archive.test_mover import (
    CT_VERSIONS,
    SECONDARY,
    TRIO,
    Stored,
    store_corpus,
    study_of,
)

TIERS = ["hot", "warm", "cold"]
DAY = dt.timedelta(days=1)


def open_archive(data_dir: Path, max_share: float) -> Archive:
    """An archive on the embedded tiers with the guard at ``max_share``."""
    settings = load_settings(
        None,
        {
            "server.data_dir": str(data_dir),
            "ingest.on_conflict": "version",
            "lifecycle.max_share": max_share,
        },
        environ={},
    )
    return Archive.open(settings)


@pytest.fixture
def archive(tmp_path: Path, corpus: Path) -> Iterator[tuple[Archive, Stored]]:
    """Three studies in hot; the guard allows moving the whole archive."""
    opened = open_archive(tmp_path / "data", 1.0)
    stored = store_corpus(opened, corpus)
    yield opened, stored
    opened.close()


def tiers_of(archive: Archive, study_uid: str) -> set[str]:
    """The tiers holding any version of a study."""
    return {
        version.tier
        for _series, sop_uid in archive.index.catalog.study_members(study_uid)
        for version in archive.record(sop_uid).versions.values()
    }


class TestPolicyValidation:
    def test_unknown_attribute_is_rejected_with_the_known_ones(self) -> None:
        """A mistyped attribute names itself and the rule."""
        text = '[[rules]]\nname = "a"\nto_tier = "cold"\nmodalty = ["CT"]\n'
        with pytest.raises(
            PolicyError, match=r"^rule 1 \(a\): unknown attribute 'modalty'; known: "
        ):
            parse_policy(text, TIERS)

    def test_unknown_tier_is_rejected_with_the_configured_ones(self) -> None:
        """A rule may only name a configured tier."""
        text = '[[rules]]\nname = "a"\nto_tier = "glacier"\n'
        with pytest.raises(
            PolicyError,
            match=r"^rule 1 \(a\): unknown tier 'glacier'; "
            "configured tiers are hot, warm, cold$",
        ):
            parse_policy(text, TIERS)

    def test_bad_duration_is_rejected_with_the_expected_form(self) -> None:
        """'90 days' is not a duration; '90d' is."""
        text = '[[rules]]\nname = "a"\nto_tier = "cold"\ningested_before = "90 days"\n'
        with pytest.raises(
            PolicyError,
            match=r"^rule 1 \(a\) ingested_before: bad duration '90 days'; expected "
            r"a whole number and a unit \(s, m, h, d, w, y\), e.g. '90d'$",
        ):
            parse_policy(text, TIERS)

    def test_rule_without_target_and_repeated_names_are_rejected(self) -> None:
        """Every rule needs a name and a tier; names are unique."""
        with pytest.raises(
            PolicyError, match=r"^rule 1 \(a\): needs a 'name' and a 'to_tier'$"
        ):
            parse_policy('[[rules]]\nname = "a"\n', TIERS)
        twice = '{"rules": [{"name": "a", "to_tier": "cold"}, '
        twice += '{"name": "a", "to_tier": "warm"}]}'
        with pytest.raises(
            PolicyError, match=r"^lifecycle rules: rule names repeated: \['a'\]$"
        ):
            parse_policy(twice, TIERS)

    def test_json_and_toml_give_the_same_rules(self) -> None:
        """Both formats are accepted."""
        toml = '[[rules]]\nname = "a"\nto_tier = "cold"\nnot_read_for = "2w"\n'
        json_text = (
            '{"rules": [{"name": "a", "to_tier": "cold", "not_read_for": "2w"}]}'
        )
        assert parse_policy(toml, TIERS).rules == parse_policy(json_text, TIERS).rules
        assert parse_policy(toml, TIERS).rules[0].not_read_for == 14 * DAY


class TestPolicyStore:
    def test_set_replaces_the_whole_set_durably_with_a_rising_version(
        self, tmp_path: Path
    ) -> None:
        """Version 1, then 2 replacing all rules; kept across a reopen."""
        first = open_archive(tmp_path / "data", 0.1)
        assert first.get_policy().version == 0
        first.set_policy('[[rules]]\nname = "a"\nto_tier = "cold"\n')
        second = first.set_policy('[[rules]]\nname = "b"\nto_tier = "warm"\n')
        assert second.version == 2
        first.close()

        reopened = open_archive(tmp_path / "data", 0.1)
        try:
            policy = reopened.get_policy()
            assert (policy.version, [r.name for r in policy.rules]) == (2, ["b"])
        finally:
            reopened.close()

    def test_a_rejected_set_leaves_the_rules_in_force(self, tmp_path: Path) -> None:
        """Validation happens before anything is stored."""
        archive = open_archive(tmp_path / "data", 0.1)
        try:
            archive.set_policy('[[rules]]\nname = "a"\nto_tier = "cold"\n')
            with pytest.raises(PolicyError, match="unknown tier 'cool'"):
                archive.set_policy('[[rules]]\nname = "b"\nto_tier = "cool"\n')
            assert archive.get_policy().version == 1
        finally:
            archive.close()


class TestPlanAndApply:
    def test_age_since_ingest_rule_matches_only_once_the_age_is_reached(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """At 10 days nothing is due; at 100 days every study is."""
        arch, stored = archive
        arch.set_policy(
            '[[rules]]\nname = "old"\nto_tier = "cold"\ningested_before = "90d"\n'
        )
        now = dt.datetime.now(dt.UTC)
        assert arch.plan_lifecycle(now + 10 * DAY).moves == ()
        plan = arch.plan_lifecycle(now + 100 * DAY)
        assert {m.study_uid for m in plan.moves} == set(stored.studies)
        assert {m.rule for m in plan.moves} == {"old"}
        assert (
            plan.bytes
            == plan.archive_bytes
            == sum(p.stat().st_size for p in stored.sha256)
        )

    def test_apply_moves_what_the_plan_lists_and_then_nothing_is_due(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Modality rule: only the CT study goes to cold; a second run is empty."""
        arch, stored = archive
        arch.set_policy('[[rules]]\nname = "ct"\nto_tier = "cold"\nmodality = "CT"\n')
        ct = study_of(stored, CT_VERSIONS[0])
        plan, done, failed = arch.apply_lifecycle()
        assert [m.study_uid for m in plan.moves] == [ct]
        assert [(o.study_uid, o.to_tier, o.versions) for o in done] == [(ct, "cold", 3)]
        assert failed == []
        assert tiers_of(arch, ct) == {"cold"}
        assert tiers_of(arch, study_of(stored, TRIO[0])) == {"hot"}
        assert arch.plan_lifecycle().moves == ()

    def test_not_read_for_rule_spares_a_study_read_recently(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """A read at day 50 keeps the Trio study hot at day 70 (30-day rule)."""
        arch, stored = archive
        arch.set_policy(
            '[[rules]]\nname = "idle"\nto_tier = "warm"\nnot_read_for = "30d"\n'
        )
        now = dt.datetime.now(dt.UTC)
        trio = study_of(stored, TRIO[0])
        arch.note_access(trio, now + 50 * DAY)
        planned = {m.study_uid for m in arch.plan_lifecycle(now + 70 * DAY).moves}
        assert planned == set(stored.studies) - {trio}
        assert trio in {m.study_uid for m in arch.plan_lifecycle(now + 81 * DAY).moves}

    def test_first_matching_rule_decides_and_size_bounds_apply(
        self, archive: tuple[Archive, Stored]
    ) -> None:
        """Big studies go to cold by rule 1; the rest to warm by rule 2."""
        arch, stored = archive
        arch.set_policy(
            '[[rules]]\nname = "big"\nto_tier = "cold"\nmin_bytes = 1000000\n'
            '[[rules]]\nname = "rest"\nto_tier = "warm"\n'
        )
        plan = {m.study_uid: (m.to_tier, m.rule) for m in arch.plan_lifecycle().moves}
        sizes = {
            uid: sum(p.stat().st_size for p in paths)
            for uid, paths in stored.studies.items()
        }
        assert plan == {
            uid: ("cold", "big") if size >= 1_000_000 else ("warm", "rest")
            for uid, size in sizes.items()
        }
        assert study_of(stored, SECONDARY[0]) in plan


class TestGuard:
    def test_a_run_above_the_share_stops_says_what_it_would_do_and_moves_nothing(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """Default 10 %: a catch-all rule is refused until confirmed."""
        arch = open_archive(tmp_path / "data", 0.1)
        try:
            stored = store_corpus(arch, corpus)
            arch.set_policy('[[rules]]\nname = "all"\nto_tier = "cold"\n')
            total = sum(p.stat().st_size for p in stored.sha256)
            with pytest.raises(
                RefusedError,
                match=rf"^lifecycle run stopped by the guard: it would move 3 "
                rf"studies, {total} bytes, 100\.0% of the archive, above "
                r"lifecycle\.max_share \(10\.0%\); nothing was moved\. Check the "
                r"plan with `dicomvault tier apply --dry-run`, then run it with "
                r"--confirm$",
            ):
                arch.apply_lifecycle()
            assert all(tiers_of(arch, uid) == {"hot"} for uid in stored.studies)

            _plan, done, _failed = arch.apply_lifecycle(confirm=True)
            assert len(done) == 3
            assert all(tiers_of(arch, uid) == {"cold"} for uid in stored.studies)
        finally:
            arch.close()
