"""Search: DICOM attribute matching over the metadata index.

Matching follows PS3.4 C.2.2.2 and PS3.18 10.6 (QIDO-RS):

- single value; universal (an empty value places no constraint);
- wildcards ``*`` and ``?`` (person names case-insensitive, C.2.2.2.4 and
  PS3.18 10.6.1.2.3);
- ranges ``A-B``, ``A-`` and ``-B`` of dates, times and date-times
  (C.2.2.2.5); a partial upper time bound such as ``-1015`` takes in every
  time of that minute;
- lists of UIDs separated by backslashes (C.2.2.2.2);
- sequence matching of one level (C.2.2.2.6): keys ``Sequence.Keyword``;
  the keys of one sequence must all match within the same item;
- optional fuzzy matching of person names (C.2.2.2.7): a name matches when
  it, or one of its ``^`` components, is close to the value (Jaro-Winkler
  similarity of at least 0.85, case-insensitive).

Typed index columns answer the common attributes; any other attribute
(a keyword, an ``GGGGEEEE`` tag, private tags included) matches through the
instance's DICOM JSON, or through its column once an administrator has added
it as an extended query attribute (:mod:`dicomvault.archive.index.extended`).

A search runs in two steps: it selects one page of entity keys in a stable
order, then computes the page's attributes (NumberOfStudyRelatedSeries,
NumberOfStudyRelatedInstances, ModalitiesInStudy,
NumberOfSeriesRelatedInstances, ...). Results are not capped: every match
can be reached by following ``next_cursor`` (or ``next_offset``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag

from dicomvault.archive.errors import InvalidInputError
from dicomvault.archive.index import extended
from dicomvault.archive.index.metadata import MetadataIndex
from dicomvault.archive.search_results import fetch_page

LEVELS = ("PATIENT", "STUDY", "SERIES", "INSTANCE")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
FUZZY_SIMILARITY = 0.85

# Tables from the top of the hierarchy down; each row: alias, table, key.
_HIERARCHY = (
    ("pa", "patients", "patient_key"),
    ("st", "studies", "study_uid"),
    ("se", "series", "series_uid"),
    ("i", "instances", "sop_instance_uid"),
)
_DEPTH = {alias: n for n, (alias, _, _) in enumerate(_HIERARCHY)}
_LEVEL_ALIAS = {"PATIENT": "pa", "STUDY": "st", "SERIES": "se", "INSTANCE": "i"}

# keyword -> (table alias, column, kind)
_TYPED: dict[str, tuple[str, str, str]] = {
    "PatientID": ("st", "patient_id", "text"),
    "PatientName": ("st", "patient_name", "name"),
    "IssuerOfPatientID": ("pa", "issuer_of_patient_id", "text"),
    "PatientBirthDate": ("pa", "patient_birth_date", "date"),
    "PatientSex": ("pa", "patient_sex", "text"),
    "StudyInstanceUID": ("st", "study_uid", "uid"),
    "StudyDate": ("st", "study_date", "date"),
    "StudyTime": ("st", "study_time", "time"),
    "AccessionNumber": ("st", "accession_number", "text"),
    "StudyID": ("st", "study_id", "text"),
    "StudyDescription": ("st", "study_description", "text"),
    "ReferringPhysicianName": ("st", "referring_physician_name", "name"),
    "Modality": ("se", "modality", "text"),
    "ModalitiesInStudy": ("se", "modality", "text"),
    "SeriesInstanceUID": ("se", "series_uid", "uid"),
    "SeriesNumber": ("se", "series_number", "number"),
    "SeriesDescription": ("se", "series_description", "text"),
    "BodyPartExamined": ("se", "body_part_examined", "text"),
    "SeriesDate": ("se", "series_date", "date"),
    "SOPInstanceUID": ("i", "sop_instance_uid", "uid"),
    "SOPClassUID": ("i", "sop_class_uid", "uid"),
    "InstanceNumber": ("i", "instance_number", "number"),
    "Rows": ("i", "rows", "number"),
    "Columns": ("i", "columns", "number"),
    "NumberOfFrames": ("i", "number_of_frames", "number"),
}
_KIND_BY_VR = {
    "PN": "name",
    "DA": "date",
    "TM": "time",
    "DT": "time",
    "UI": "uid",
    "IS": "number",
    "DS": "number",
    "FL": "number",
    "FD": "number",
    "SS": "number",
    "US": "number",
    "SL": "number",
    "UL": "number",
    "SV": "number",
    "UV": "number",
}
_ORDER = {
    "pa": "pa.patient_id NULLS LAST, pa.patient_key",
    "st": "st.study_date NULLS LAST, st.study_uid",
    "se": "se.study_uid, se.series_number NULLS LAST, se.series_uid",
    "i": "i.study_uid, i.series_uid, i.instance_number NULLS LAST, i.sop_instance_uid",
}

Predicate = Callable[[str], tuple[str, list[Any]]]


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results, each a DICOM JSON dict.

    ``total`` is set when asked for; ``next_offset`` and ``next_cursor`` are
    0 and empty after the last page.
    """

    results: list[dict[str, Any]]
    total: int | None
    next_offset: int
    next_cursor: str = ""


@dataclass(slots=True)
class _Where:
    """Conditions grouped by the table they constrain."""

    by_alias: dict[str, list[str]] = field(default_factory=dict)
    params: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, alias: str, sql: str, params: list[Any]) -> None:
        self.by_alias.setdefault(alias, []).append(sql)
        self.params.setdefault(alias, []).extend(params)


# -- values -------------------------------------------------------------------


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _date(part: str, keyword: str, value: str) -> dt.date:
    try:
        return dt.datetime.strptime(part.strip(), "%Y%m%d").date()
    except ValueError:
        raise InvalidInputError(
            f"{keyword} value {value!r} is not a date YYYYMMDD or a range "
            "YYYYMMDD-YYYYMMDD"
        ) from None


def _clock(part: str, keyword: str, value: str) -> str:
    text = part.strip().replace(":", "")
    if not text or not text.replace(".", "").replace("+", "").isdigit():
        raise InvalidInputError(
            f"{keyword} value {value!r} is not a time HHMMSS or a range "
            "HHMMSS-HHMMSS (date-times: YYYYMMDDHHMMSS-YYYYMMDDHHMMSS)"
        )
    return text


def _split_range(value: str, keyword: str) -> tuple[str, str] | None:
    if "-" not in value:
        return None
    low, high = value.split("-", 1)
    if not low.strip() and not high.strip():
        raise InvalidInputError(f"{keyword} range {value!r} has no bounds")
    return low, high


# -- predicates -----------------------------------------------------------------


def _predicate(
    keyword: str, kind: str, value: str, fuzzy: bool, typed: bool
) -> Predicate:
    """A function from an SQL expression to the condition that ``value`` sets."""
    if kind == "date":
        bounds = _split_range(value, keyword)
        convert: Callable[[str], Any] = (
            (lambda p: _date(p, keyword, value))
            if typed
            else (lambda p: _date(p, keyword, value).strftime("%Y%m%d"))
        )
        if bounds is None:
            exact = convert(value)
            return lambda x: (f"{x} = ?", [exact])
        low, high = bounds
        return _range(convert(low) if low else None, convert(high) if high else None)
    if kind == "time":
        bounds = _split_range(value, keyword)
        if bounds is None:
            exact = _clock(value, keyword, value)
            return lambda x: (f"starts_with({x}, ?)", [exact])
        low, high = (_clock(p, keyword, value) if p else "" for p in bounds)
        return _clock_range(low, high)
    if kind == "uid":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        marks = ", ".join("?" for _ in uids)
        return lambda x: (f"{x} IN ({marks})", list(uids))
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            raise InvalidInputError(
                f"{keyword} value {value!r} is not a number"
            ) from None
        return lambda x: (f"TRY_CAST({x} AS DOUBLE) = ?", [number])
    if "*" in value or "?" in value:
        op = "ILIKE" if kind == "name" else "LIKE"
        pattern = _like(value)
        return lambda x: (f"{x} {op} ? ESCAPE '\\'", [pattern])
    if kind == "name" and fuzzy:
        return _fuzzy(value)
    if kind == "name":
        return lambda x: (f"lower({x}) = lower(?)", [value])
    return lambda x: (f"{x} = ?", [value])


def _range(low: Any, high: Any) -> Predicate:
    def condition(x: str) -> tuple[str, list[Any]]:
        parts, params = [], []
        if low is not None:
            parts.append(f"{x} >= ?")
            params.append(low)
        if high is not None:
            parts.append(f"{x} <= ?")
            params.append(high)
        return " AND ".join(parts), params

    return condition


def _clock_range(low: str, high: str) -> Predicate:
    # A partial upper bound (1015) includes every value that begins with it
    # (101500 ... 101559.999999), so compare only that many characters.
    def condition(x: str) -> tuple[str, list[Any]]:
        parts, params = [], []
        if low:
            parts.append(f"replace({x}, ':', '') >= ?")
            params.append(low)
        if high:
            parts.append(f"left(replace({x}, ':', ''), {len(high)}) <= ?")
            params.append(high)
        return " AND ".join(parts), params

    return condition


def _fuzzy(value: str) -> Predicate:
    wanted = value.lower().replace("^", " ").strip()

    def condition(x: str) -> tuple[str, list[Any]]:
        return (
            f"(jaro_winkler_similarity(lower(replace({x}, '^', ' ')), ?) >= ? "
            f"OR list_max(list_transform(string_split(lower({x}), '^'), "
            f"lambda part: jaro_winkler_similarity(part, ?))) >= ?)",
            [wanted, FUZZY_SIMILARITY, wanted, FUZZY_SIMILARITY],
        )

    return condition


# -- attributes ------------------------------------------------------------------


def resolve_tag(key: str) -> tuple[str, str]:
    """The ``GGGGEEEE`` tag and VR of a keyword or hex tag.

    Raises
    ------
    InvalidInputError
        Neither a DICOM keyword nor eight hex digits.
    """
    tag = extended.parse_tag(key)
    if tag is None:
        raise InvalidInputError(
            f"cannot match on {key!r}: not a DICOM keyword or a tag GGGGEEEE; "
            "use a keyword such as 'SliceThickness' or a tag such as '00180050'"
        )
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "UN"  # private or unknown: matched as text
    return f"{tag:08X}", vr


def _json_values(source: str, tag: str, vr: str) -> str:
    suffix = ".Alphabetic" if vr == "PN" else ""
    return f"json_extract_string({source}, '$.\"{tag}\".Value[*]{suffix}')"


def _any(values: str, predicate: Predicate, var: str) -> tuple[str, list[Any]]:
    sql, params = predicate(var)
    return f"len(list_filter({values}, lambda {var}: {sql})) > 0", params


def _conditions(index: MetadataIndex, match: dict[str, str], fuzzy: bool) -> _Where:
    where = _Where()
    columns = extended.columns(index)
    sequences: dict[str, list[tuple[str, str]]] = {}
    for key, value in match.items():
        if value == "":
            continue  # universal matching
        if "." in key:
            sequence, _, item_key = key.partition(".")
            sequences.setdefault(sequence, []).append((item_key, value))
            continue
        if key in _TYPED:
            alias, column, kind = _TYPED[key]
            sql, params = _predicate(key, kind, value, fuzzy, True)(f"{alias}.{column}")
            where.add(alias, sql, params)
            continue
        tag, vr = resolve_tag(key)
        kind = _KIND_BY_VR.get(vr, "text")
        predicate = _predicate(key, kind, value, fuzzy, False)
        if tag in columns:
            column = columns[tag]
            cast = f"CAST(i.{column} AS VARCHAR)"
            if kind == "date":
                cast = f"strftime(i.{column}, '%Y%m%d')"
            sql, params = predicate(cast)
        else:
            sql, params = _any(_json_values("i.dicom_json", tag, vr), predicate, "v")
        where.add("i", sql, params)
    for sequence, keys in sequences.items():
        sql, params = _sequence(sequence, keys, fuzzy)
        where.add("i", sql, params)
    return where


def _sequence(
    sequence: str, keys: list[tuple[str, str]], fuzzy: bool
) -> tuple[str, list[Any]]:
    seq_tag, seq_vr = resolve_tag(sequence)
    if seq_vr != "SQ":
        raise InvalidInputError(
            f"{sequence!r} is not a sequence (VR {seq_vr}); "
            "keys of the form Sequence.Keyword need a sequence attribute"
        )
    parts, params = [], []
    for item_key, value in keys:
        if "." in item_key:
            raise InvalidInputError(
                f"sequence matching goes one level deep; "
                f"{sequence}.{item_key!r} is nested deeper"
            )
        tag, vr = resolve_tag(item_key)
        kind = _KIND_BY_VR.get(vr, "text")
        predicate = _predicate(item_key, kind, value, fuzzy, False)
        sql, item_params = _any(_json_values("item", tag, vr), predicate, "w")
        parts.append(sql)
        params.extend(item_params)
    items = f"json_extract(i.dicom_json, '$.\"{seq_tag}\".Value[*]')"
    return f"len(list_filter({items}, lambda item: {' AND '.join(parts)})) > 0", params


# -- the query -------------------------------------------------------------------


def _filter_sql(level: str, where: _Where) -> tuple[str, list[Any]]:
    """``SELECT key FROM <level table>`` with its conditions.

    Ancestors are joined (each row has exactly one); descendants become
    semi-joins (the entity matches when one of its descendants does).
    """
    alias = _LEVEL_ALIAS[level]
    depth = _DEPTH[alias]
    _, table, key = _HIERARCHY[depth]
    joins: list[str] = []
    conds: list[str] = []
    params: list[Any] = []

    ancestors = [a for a in where.by_alias if _DEPTH[a] < depth]
    if alias in ("se", "i") and ("st" in ancestors or "pa" in ancestors):
        joins.append(f"JOIN studies st ON st.study_uid = {alias}.study_uid")
    if alias == "i" and "se" in ancestors:
        joins.append("JOIN series se ON se.series_uid = i.series_uid")
    if "pa" in ancestors:
        joins.append("JOIN patients pa ON pa.patient_key = st.patient_key")
    for a in ("pa", "st", "se", "i"):
        if a in where.by_alias and _DEPTH[a] <= depth:
            conds.extend(where.by_alias[a])
            params.extend(where.params[a])

    descendants = [a for a in ("st", "se", "i") if a in where.by_alias]
    descendants = [a for a in descendants if _DEPTH[a] > depth]
    if alias == "pa" and descendants:
        sub, sub_params = [], []
        for a in descendants:
            if a == "st":
                sub.extend(where.by_alias[a])
            else:
                sub.append(_semi("st.study_uid", a, "study_uid", where))
            sub_params.extend(where.params[a])
        conds.append(
            "pa.patient_key IN (SELECT st.patient_key FROM studies st WHERE "
            + " AND ".join(sub)
            + ")"
        )
        params.extend(sub_params)
    elif descendants:
        link = "series_uid" if alias == "se" else "study_uid"
        for a in descendants:
            conds.append(_semi(f"{alias}.{link}", a, link, where))
            params.extend(where.params[a])

    sql = f"SELECT {alias}.{key} FROM {table} {alias} " + " ".join(joins)
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    return sql, params


def _semi(target: str, alias: str, link: str, where: _Where) -> str:
    table = _HIERARCHY[_DEPTH[alias]][1]
    body = " AND ".join(where.by_alias[alias])
    return f"{target} IN (SELECT {alias}.{link} FROM {table} {alias} WHERE {body})"


def _query_hash(level: str, match: dict[str, str], fuzzy: bool) -> str:
    text = json.dumps([level, sorted(match.items()), fuzzy])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(level: str, match: dict[str, str], fuzzy: bool, offset: int) -> str:
    """An opaque token for the page that starts at ``offset``."""
    body = json.dumps({"q": _query_hash(level, match, fuzzy), "o": offset})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, level: str, match: dict[str, str], fuzzy: bool) -> int:
    """The offset a cursor stands for, after checking it belongs to this query.

    Raises
    ------
    InvalidInputError
        A token that does not decode, or one issued for another query.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        query, offset = str(body["q"]), int(body["o"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInputError(
            f"cursor {cursor!r} is not a cursor this server issued; "
            "start again without a cursor"
        ) from None
    if query != _query_hash(level, match, fuzzy):
        raise InvalidInputError(
            "the cursor belongs to a different search (level, match or fuzzy "
            "changed); send the same search with it, or start again without one"
        )
    return offset


def search(
    index: MetadataIndex,
    level: str,
    match: dict[str, str],
    include_fields: list[str],
    limit: int,
    offset: int,
    count_total: bool,
    *,
    fuzzy: bool = False,
    cursor: str = "",
) -> SearchPage:
    """Find entities at ``level`` matching every attribute in ``match``.

    Parameters
    ----------
    match
        Keyword (or ``GGGGEEEE`` tag, or ``Sequence.Keyword``) to value.
    include_fields
        Extra attributes (keywords or tags) to return; ``all`` returns every
        attribute of the entity's DICOM JSON.
    limit
        Page size; 0 means 100.
    cursor
        A ``next_cursor`` from the previous page of the same search; it
        replaces ``offset``.

    Raises
    ------
    InvalidInputError
        Unknown level or attribute, bad date, time or number, a limit above
        the maximum page size, or a cursor from another search.
    """
    if level not in LEVELS:
        raise InvalidInputError(f"level {level!r} is not one of {', '.join(LEVELS)}")
    if limit > MAX_LIMIT:
        raise InvalidInputError(
            f"limit {limit} is above the maximum page size {MAX_LIMIT}; "
            "page through the rest with next_cursor"
        )
    limit = limit or DEFAULT_LIMIT
    if cursor:
        offset = decode_cursor(cursor, level, match, fuzzy)
    include = _include_tags(include_fields)

    where = _conditions(index, match, fuzzy)
    filter_sql, params = _filter_sql(level, where)
    alias = _LEVEL_ALIAS[level]
    page_sql = f"{filter_sql} ORDER BY {_ORDER[alias]} LIMIT ? OFFSET ?"
    cur = index.cursor()
    keys = [
        r[0] for r in cur.execute(page_sql, [*params, limit + 1, offset]).fetchall()
    ]
    more = len(keys) > limit
    keys = keys[:limit]
    results = fetch_page(cur, level, keys, include)

    total = None
    if count_total:
        row = cur.execute(f"SELECT count(*) FROM ({filter_sql})", params).fetchone()
        total = int(row[0]) if row else 0
    next_offset = offset + limit if more else 0
    next_cursor = encode_cursor(level, match, fuzzy, next_offset) if more else ""
    return SearchPage(results, total, next_offset, next_cursor)


def _include_tags(include_fields: list[str]) -> list[str] | None:
    """Tags to copy from the DICOM JSON; None means all of them."""
    tags: list[str] = []
    for name in include_fields:
        if name.lower() == "all":
            return None
        try:
            tag, _ = resolve_tag(name)
        except InvalidInputError:
            raise InvalidInputError(
                f"includefield {name!r} is not a DICOM keyword or a tag GGGGEEEE"
            ) from None
        tags.append(tag)
    return tags


def keyword_of(tag: str) -> str:
    """The keyword of a ``GGGGEEEE`` tag, or the tag itself when private."""
    return keyword_for_tag(int(tag, 16)) or tag
