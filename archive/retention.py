"""Retention rules: which studies are due for deletion, and why.

A retention rule set is TOML or JSON, like the lifecycle rules::

    [[rules]]
    name = "mr-10y"
    keep_for = "10y"                 # after the StudyDate
    modality = ["MR"]                # optional: any series of the study
    calling_application = ["MR1"]    # optional: the sending application

A study is due when any rule matches it and its StudyDate is more than
``keep_for`` ago; studies without a StudyDate are never due. A held study
is listed as held and is never deleted. :func:`plan_retention` only says
what would go (``dicomvault retention preview``); deleting is the archive's
two-phase :meth:`~dicomvault.archive.service.Archive.delete`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dicomvault.archive.lifecycle import (
    PolicyError,
    StudyFacts,
    load_rule_text,
    parse_duration,
)

RETENTION_KEYS = ("name", "keep_for", "modality", "calling_application")


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """One validated retention rule."""

    name: str
    keep_for: dt.timedelta
    modality: tuple[str, ...] = ()
    calling_application: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DueStudy:
    """A study a retention rule would delete."""

    study_uid: str
    rule: str
    bytes: int
    held: bool


def parse_retention(text: str) -> tuple[RetentionRule, ...]:
    """Parse and validate retention rules (TOML, or JSON starting with ``{``).

    Raises
    ------
    PolicyError
        Unparsable text, an unknown attribute, a missing name or
        ``keep_for``, or a bad duration.
    """
    body = load_rule_text(text, "retention")
    rules = []
    for number, raw in enumerate(body.get("rules", []), start=1):
        if not isinstance(raw, Mapping):
            raise PolicyError(f"retention rule {number}: must be a table")
        where = f"retention rule {number} ({raw.get('name', 'unnamed')})"
        unknown = sorted(set(raw) - set(RETENTION_KEYS))
        if unknown:
            raise PolicyError(
                f"{where}: unknown attribute {unknown[0]!r}; "
                f"known: {', '.join(RETENTION_KEYS)}"
            )
        if not raw.get("name") or "keep_for" not in raw:
            raise PolicyError(f"{where}: needs a 'name' and a 'keep_for'")
        lists = {
            key: tuple(
                str(v) for v in (raw[key] if isinstance(raw[key], list) else [raw[key]])
            )
            for key in ("modality", "calling_application")
            if key in raw
        }
        rules.append(
            RetentionRule(
                str(raw["name"]),
                parse_duration(raw["keep_for"], f"{where} keep_for"),
                **lists,
            )
        )
    return tuple(rules)


def plan_retention(
    rules: tuple[RetentionRule, ...],
    facts: dict[str, StudyFacts],
    now: dt.datetime,
    is_held: Callable[[str], bool],
) -> list[DueStudy]:
    """The studies due at ``now``; held ones are listed with ``held=True``."""
    due = []
    for study in sorted(facts.values(), key=lambda s: s.study_uid):
        for rule in rules:
            if _matches(rule, study, now):
                due.append(
                    DueStudy(
                        study.study_uid,
                        rule.name,
                        study.bytes,
                        is_held(study.study_uid),
                    )
                )
                break
    return due


def _matches(rule: RetentionRule, study: StudyFacts, now: dt.datetime) -> bool:
    if study.study_date is None or now.date() - study.study_date < rule.keep_for:
        return False
    if rule.modality and not study.modalities & set(rule.modality):
        return False
    return not rule.calling_application or bool(
        study.calling_applications & set(rule.calling_application)
    )


def store_rules(env: Any, text: str) -> tuple[RetentionRule, ...]:
    """Validate and keep a retention rule set durably (replacing the old)."""
    rules = parse_retention(text)
    db = env.open_db(b"lifecycle")
    with env.begin(write=True, db=db) as txn:
        txn.put(b"retention/current", text.encode())
    return rules


def load_rules(env: Any) -> tuple[RetentionRule, ...]:
    """The retention rules in force (none when never set)."""
    db = env.open_db(b"lifecycle")
    with env.begin(db=db) as txn:
        raw = txn.get(b"retention/current")
    return parse_retention(raw.decode()) if raw is not None else ()
