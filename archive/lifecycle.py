"""Lifecycle rules: which studies belong in which tier, and the runs that move them.

A rule set is a TOML or JSON document of ``rules``; each rule names a target
tier and the attributes a study must match (all of them)::

    [[rules]]
    name = "old-ct-to-cold"
    to_tier = "cold"
    modality = ["CT", "MR"]          # any series of the study has one of them
    calling_application = ["CT1"]    # the application that sent an instance
    ingested_before = "90d"          # newest instance stored more than 90 days ago
    not_read_for = "30d"             # no retrieval for 30 days (or never read)
    study_date_before = "5y"         # StudyDate more than five years ago
    min_bytes = 1000000              # study size in bytes, at least ...
    max_bytes = 5000000000           # ... and at most

The first rule that matches a study decides its tier. Durations are a whole
number and a unit: ``s``, ``m``, ``h``, ``d``, ``w`` or ``y`` (365 days).

Rule sets are validated as a whole, kept durably in the catalog's LMDB
environment with a version number that rises by one at each replacement, and
replaced only as a whole. :func:`plan_moves` says what a run would do at a
given time (the clock is a parameter, so tests control it); the archive's
``apply_lifecycle`` executes the plan, one study at a time, after the guard.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dicomvault.archive.errors import InvalidInputError

if TYPE_CHECKING:
    from dicomvault.archive.index import Index

_DURATION = re.compile(r"^(\d+)([smhdwy])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_LIST_KEYS = ("modality", "calling_application")
_DURATION_KEYS = ("ingested_before", "not_read_for", "study_date_before")
_SIZE_KEYS = ("min_bytes", "max_bytes")
RULE_KEYS = ("name", "to_tier", *_LIST_KEYS, *_DURATION_KEYS, *_SIZE_KEYS)


class PolicyError(InvalidInputError):  # type: ignore[misc]
    """A lifecycle rule set is malformed; nothing was changed."""


def parse_duration(text: str, where: str) -> dt.timedelta:
    """``"90d"`` -> 90 days.

    Raises
    ------
    PolicyError
        Not a whole number followed by one of s, m, h, d, w, y.
    """
    match = _DURATION.match(str(text))
    if match is None:
        raise PolicyError(
            f"{where}: bad duration {text!r}; expected a whole number and a unit "
            "(s, m, h, d, w, y), e.g. '90d'"
        )
    return dt.timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule."""

    name: str
    to_tier: str
    modality: tuple[str, ...] = ()
    calling_application: tuple[str, ...] = ()
    ingested_before: dt.timedelta | None = None
    not_read_for: dt.timedelta | None = None
    study_date_before: dt.timedelta | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated rule set and the text it came from."""

    version: int
    rules: tuple[Rule, ...]
    source: str


def load_rule_text(text: str, what: str) -> dict[str, Any]:
    """Parse a rule file: JSON when it starts with ``{``, TOML otherwise."""
    try:
        if text.lstrip().startswith("{"):
            body = json.loads(text)
        else:
            body = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise PolicyError(f"{what} rules are not valid TOML or JSON: {err}") from None
    if not isinstance(body, dict):
        raise PolicyError(f"{what} rules must be a table with a 'rules' list")
    return body


def parse_policy(text: str, tiers: list[str], version: int = 0) -> Policy:
    """Parse and validate a rule set (TOML, or JSON when it starts with ``{``).

    Raises
    ------
    PolicyError
        Unparsable text, an unknown attribute, an unknown tier, a bad
        duration or size, a rule without a name or tier, a repeated name.
    """
    body = load_rule_text(text, "lifecycle")
    unknown_top = set(body) - {"rules"}
    if unknown_top:
        raise PolicyError(
            f"lifecycle rules: unknown top-level keys {sorted(unknown_top)}; "
            "only 'rules' is allowed"
        )
    rules: list[Rule] = []
    for number, raw in enumerate(body.get("rules", []), start=1):
        rules.append(_parse_rule(raw, number, tiers))
    names = [r.name for r in rules]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PolicyError(f"lifecycle rules: rule names repeated: {repeated}")
    return Policy(version, tuple(rules), text)


def _parse_rule(raw: Any, number: int, tiers: list[str]) -> Rule:
    where = f"rule {number}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: must be a table of attributes")
    where = f"rule {number} ({raw.get('name', 'unnamed')})"
    unknown = sorted(set(raw) - set(RULE_KEYS))
    if unknown:
        raise PolicyError(
            f"{where}: unknown attribute {unknown[0]!r}; known: {', '.join(RULE_KEYS)}"
        )
    if not raw.get("name") or not raw.get("to_tier"):
        raise PolicyError(f"{where}: needs a 'name' and a 'to_tier'")
    if raw["to_tier"] not in tiers:
        raise PolicyError(
            f"{where}: unknown tier {raw['to_tier']!r}; "
            f"configured tiers are {', '.join(tiers)}"
        )
    values: dict[str, Any] = {"name": str(raw["name"]), "to_tier": raw["to_tier"]}
    for key in _LIST_KEYS:
        if key in raw:
            items = raw[key] if isinstance(raw[key], list) else [raw[key]]
            values[key] = tuple(str(v) for v in items)
    for key in _DURATION_KEYS:
        if key in raw:
            values[key] = parse_duration(raw[key], f"{where} {key}")
    for key in _SIZE_KEYS:
        if key in raw:
            if not isinstance(raw[key], int) or raw[key] < 0:
                raise PolicyError(
                    f"{where} {key}: {raw[key]!r} must be a whole number of bytes"
                )
            values[key] = raw[key]
    return Rule(**values)


# -- durable storage ---------------------------------------------------------


class PolicyStore:
    """The current rule set and every earlier one, in LMDB, by version."""

    def __init__(self, index: Index):
        self.env = index.catalog.env
        self._db = self.env.open_db(b"lifecycle")

    def current(self, tiers: list[str]) -> Policy:
        """The rule set in force (version 0 and no rules when none was set)."""
        with self.env.begin(db=self._db) as txn:
            raw = txn.get(b"current")
        if raw is None:
            return Policy(0, (), "")
        body = json.loads(raw)
        return parse_policy(body["source"], tiers, body["version"])

    def replace(self, text: str, tiers: list[str]) -> Policy:
        """Validate and store a new rule set as a whole; return it."""
        parse_policy(text, tiers)
        with self.env.begin(write=True, db=self._db) as txn:
            raw = txn.get(b"current")
            version = (json.loads(raw)["version"] if raw else 0) + 1
            body = json.dumps({"version": version, "source": text}).encode()
            txn.put(b"current", body)
            txn.put(f"version/{version:010d}".encode(), body)
        return parse_policy(text, tiers, version)

    def note_access(self, study_uid: str, when: dt.datetime) -> None:
        """Record that a study was read at ``when``."""
        with self.env.begin(write=True, db=self._db) as txn:
            txn.put(f"access/{study_uid}".encode(), when.isoformat().encode())

    def last_access(self) -> dict[str, dt.datetime]:
        """When each study was last read, for studies that were."""
        out = {}
        with self.env.begin(db=self._db) as txn:
            cursor = txn.cursor()
            if cursor.set_range(b"access/"):
                for key, value in cursor:
                    if not key.startswith(b"access/"):
                        break
                    out[key[7:].decode()] = dt.datetime.fromisoformat(value.decode())
        return out


# -- planning ----------------------------------------------------------------


@dataclass(slots=True)
class StudyFacts:
    """What rules match on, for one study."""

    study_uid: str
    tiers: set[str] = field(default_factory=set)
    bytes: int = 0
    modalities: set[str] = field(default_factory=set)
    calling_applications: set[str] = field(default_factory=set)
    study_date: dt.date | None = None
    last_stored: dt.datetime | None = None
    last_read: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class PlannedMove:
    """One study a run would move."""

    study_uid: str
    from_tiers: tuple[str, ...]
    to_tier: str
    bytes: int
    rule: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What a lifecycle run would do, and whether the guard stops it."""

    policy_version: int
    moves: tuple[PlannedMove, ...]
    archive_bytes: int
    max_share: float

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.moves)

    @property
    def share(self) -> float:
        return self.bytes / self.archive_bytes if self.archive_bytes else 0.0

    @property
    def needs_confirmation(self) -> bool:
        return self.share > self.max_share


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def study_facts(
    index: Index, last_access: dict[str, dt.datetime]
) -> dict[str, StudyFacts]:
    """Facts of every study, from the catalog (tiers, sizes) and DuckDB."""
    facts: dict[str, StudyFacts] = {}
    for record in index.catalog.iter_records():
        study = facts.setdefault(record.study_uid, StudyFacts(record.study_uid))
        for version in record.versions.values():
            study.tiers.add(version.tier)
            study.bytes += version.size
    rows = (
        index.metadata.cursor()
        .execute(
            "SELECT i.study_uid, any_value(st.study_date), list(DISTINCT se.modality), "
            "list(DISTINCT i.calling_application), max(i.stored_at) "
            "FROM instances i LEFT JOIN studies st ON st.study_uid = i.study_uid "
            "LEFT JOIN series se ON se.series_uid = i.series_uid GROUP BY i.study_uid"
        )
        .fetchall()
    )
    for study_uid, study_date, modalities, applications, stored in rows:
        found = facts.get(study_uid)
        if found is None:
            continue
        study = found
        study.study_date = study_date
        study.modalities = {m for m in modalities if m}
        study.calling_applications = {a for a in applications if a}
        study.last_stored = _aware(stored)
        study.last_read = last_access.get(study_uid)
    return facts


def matches(rule: Rule, study: StudyFacts, now: dt.datetime) -> bool:
    """Whether a study matches every attribute a rule names."""
    if rule.modality and not study.modalities & set(rule.modality):
        return False
    if rule.calling_application and not study.calling_applications & set(
        rule.calling_application
    ):
        return False
    if rule.ingested_before is not None:
        if study.last_stored is None or now - study.last_stored < rule.ingested_before:
            return False
    if rule.not_read_for is not None:
        seen = study.last_read or study.last_stored
        if seen is None or now - seen < rule.not_read_for:
            return False
    if rule.study_date_before is not None:
        if study.study_date is None:
            return False
        if now.date() - study.study_date < rule.study_date_before:
            return False
    if rule.min_bytes is not None and study.bytes < rule.min_bytes:
        return False
    return rule.max_bytes is None or study.bytes <= rule.max_bytes


def plan_moves(
    policy: Policy, facts: dict[str, StudyFacts], now: dt.datetime, max_share: float
) -> Plan:
    """What a run at ``now`` would move: the first matching rule decides."""
    moves = []
    for study in sorted(facts.values(), key=lambda s: s.study_uid):
        for rule in policy.rules:
            if matches(rule, study, now):
                if study.tiers != {rule.to_tier}:
                    moves.append(
                        PlannedMove(
                            study.study_uid,
                            tuple(sorted(study.tiers - {rule.to_tier})),
                            rule.to_tier,
                            study.bytes,
                            rule.name,
                        )
                    )
                break
    total = sum(s.bytes for s in facts.values())
    return Plan(policy.version, tuple(moves), total, max_share)
