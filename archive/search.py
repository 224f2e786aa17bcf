"""Search: DICOM attribute matching over the metadata index.

Matching follows PS3.4 C.2.2.2 for the attributes it supports: single value,
universal (empty value: no constraint), wildcards ``*`` and ``?`` (person
names case-insensitive), date ranges ``A-B``, ``A-`` and ``-B``, and lists of
UIDs separated by backslashes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from dicomvault.archive.errors import InvalidInputError
from dicomvault.archive.index.metadata import MetadataIndex

LEVELS = ("PATIENT", "STUDY", "SERIES", "INSTANCE")
MAX_LIMIT = 10_000

# keyword -> (SQL expression per level alias, kind)
_ATTRS: dict[str, tuple[str, str]] = {
    "PatientID": ("patient_id", "text"),
    "PatientName": ("patient_name", "name"),
    "StudyInstanceUID": ("study_uid", "uid"),
    "StudyDate": ("study_date", "date"),
    "AccessionNumber": ("accession_number", "text"),
    "StudyID": ("study_id", "text"),
    "StudyDescription": ("study_description", "text"),
    "Modality": ("modality", "text"),
    "ModalitiesInStudy": ("modality", "text"),
    "SeriesInstanceUID": ("series_uid", "uid"),
    "SeriesNumber": ("series_number", "int"),
    "SOPInstanceUID": ("sop_instance_uid", "uid"),
    "SOPClassUID": ("sop_class_uid", "uid"),
    "InstanceNumber": ("instance_number", "int"),
}

_BASE = """
FROM instances i
JOIN series se ON se.series_uid = i.series_uid
JOIN studies st ON st.study_uid = i.study_uid
"""
_COLUMN_TABLE = {
    "patient_id": "st",
    "patient_name": "st",
    "study_uid": "st",
    "study_date": "st",
    "accession_number": "st",
    "study_id": "st",
    "study_description": "st",
    "modality": "se",
    "series_uid": "se",
    "series_number": "se",
    "sop_instance_uid": "i",
    "sop_class_uid": "i",
    "instance_number": "i",
}


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results, each a DICOM JSON dict."""

    results: list[dict[str, Any]]
    total: int | None
    next_offset: int


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


def _condition(keyword: str, value: str) -> tuple[str, list[Any]]:
    if keyword not in _ATTRS:
        raise InvalidInputError(
            f"cannot match on {keyword!r}; "
            f"supported attributes: {', '.join(sorted(_ATTRS))}"
        )
    column, kind = _ATTRS[keyword]
    expr = f"{_COLUMN_TABLE[column]}.{column}"
    if kind == "date":
        if "-" in value:
            low, high = value.split("-", 1)
            parts, params = [], []
            if low:
                parts.append(f"{expr} >= ?")
                params.append(_date(low, keyword, value))
            if high:
                parts.append(f"{expr} <= ?")
                params.append(_date(high, keyword, value))
            if not parts:
                raise InvalidInputError(f"{keyword} range {value!r} has no bounds")
            return " AND ".join(parts), params
        return f"{expr} = ?", [_date(value, keyword, value)]
    if kind == "uid":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        return f"{expr} IN ({', '.join('?' for _ in uids)})", uids
    if kind == "int":
        try:
            return f"{expr} = ?", [int(value)]
        except ValueError:
            raise InvalidInputError(
                f"{keyword} value {value!r} is not a number"
            ) from None
    if "*" in value or "?" in value:
        op = "ILIKE" if kind == "name" else "LIKE"
        return f"{expr} {op} ? ESCAPE '\\'", [_like(value)]
    if kind == "name":
        return f"lower({expr}) = lower(?)", [value]
    return f"{expr} = ?", [value]


def _element(tag: int, value: Any) -> dict[str, Any]:
    vr = dictionary_VR(tag)
    if value is None or value == []:
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        values = [{"Alphabetic": str(v)} for v in values]
    elif vr == "DA":
        values = [
            v.strftime("%Y%m%d") if isinstance(v, dt.date) else str(v) for v in values
        ]
    elif vr in ("IS", "US", "UL", "SL", "SS"):
        values = [int(v) for v in values]
    else:
        values = [str(v) for v in values]
    return {"vr": vr, "Value": values}


def _to_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword, value in row.items():
        tag = tag_for_keyword(keyword)
        if tag is not None:
            out[f"{tag:08X}"] = _element(tag, value)
    return dict(sorted(out.items()))


_SELECT = {
    "PATIENT": """
        SELECT any_value(st.patient_id) AS PatientID,
               any_value(st.patient_name) AS PatientName,
               count(DISTINCT st.study_uid) AS NumberOfPatientRelatedStudies,
               count(DISTINCT se.series_uid) AS NumberOfPatientRelatedSeries,
               count(*) AS NumberOfPatientRelatedInstances,
               any_value(i.dicom_json) AS _json
    """,
    "STUDY": """
        SELECT st.study_uid AS StudyInstanceUID, any_value(st.study_date) AS StudyDate,
               any_value(st.study_time) AS StudyTime,
               any_value(st.accession_number) AS AccessionNumber,
               any_value(st.patient_id) AS PatientID,
               any_value(st.patient_name) AS PatientName,
               any_value(st.study_id) AS StudyID,
               any_value(st.study_description) AS StudyDescription,
               list_sort(list_distinct(list(se.modality))) AS ModalitiesInStudy,
               count(DISTINCT se.series_uid) AS NumberOfStudyRelatedSeries,
               count(*) AS NumberOfStudyRelatedInstances,
               any_value(i.dicom_json) AS _json
    """,
    "SERIES": """
        SELECT se.series_uid AS SeriesInstanceUID,
               any_value(st.study_uid) AS StudyInstanceUID,
               any_value(se.modality) AS Modality,
               any_value(se.series_number) AS SeriesNumber,
               any_value(se.series_description) AS SeriesDescription,
               count(*) AS NumberOfSeriesRelatedInstances,
               any_value(i.dicom_json) AS _json
    """,
    "INSTANCE": """
        SELECT i.sop_instance_uid AS SOPInstanceUID, i.sop_class_uid AS SOPClassUID,
               i.series_uid AS SeriesInstanceUID, i.study_uid AS StudyInstanceUID,
               i.instance_number AS InstanceNumber,
               i.rows AS Rows, i.columns AS Columns,
               i.number_of_frames AS NumberOfFrames, i.dicom_json AS _json
    """,
}
_GROUP = {
    "PATIENT": "GROUP BY st.patient_key "
    "ORDER BY any_value(st.patient_id), st.patient_key",
    "STUDY": "GROUP BY st.study_uid "
    "ORDER BY any_value(st.study_date) NULLS LAST, st.study_uid",
    "SERIES": "GROUP BY se.series_uid ORDER BY any_value(st.study_uid), "
    "any_value(se.series_number) NULLS LAST, se.series_uid",
    "INSTANCE": "ORDER BY i.study_uid, i.series_uid, i.instance_number NULLS LAST, "
    "i.sop_instance_uid",
}


def search(
    index: MetadataIndex,
    level: str,
    match: dict[str, str],
    include_fields: list[str],
    limit: int,
    offset: int,
    count_total: bool,
) -> SearchPage:
    """Find entities at ``level`` matching every attribute in ``match``.

    Raises
    ------
    InvalidInputError
        Unknown level or attribute, bad date, or a limit above the maximum.
    """
    if level not in LEVELS:
        raise InvalidInputError(f"level {level!r} is not one of {', '.join(LEVELS)}")
    if limit > MAX_LIMIT:
        raise InvalidInputError(
            f"limit {limit} is above the maximum page size {MAX_LIMIT}"
        )
    limit = limit or 100
    for keyword in include_fields:
        if tag_for_keyword(keyword) is None:
            raise InvalidInputError(f"includefield {keyword!r} is not a DICOM keyword")
    where, params = [], []
    for keyword, value in match.items():
        if value == "":
            continue  # universal matching
        cond, cond_params = _condition(keyword, value)
        if keyword == "ModalitiesInStudy":
            cond = (
                "st.study_uid IN (SELECT s2.study_uid FROM series s2 WHERE "
                + cond.replace("se.modality", "s2.modality")
                + ")"
            )
        where.append(cond)
        params.extend(cond_params)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    sql = f"{_SELECT[level]} {_BASE} {clause} {_GROUP[level]} LIMIT ? OFFSET ?"
    cur = index.cursor()
    cur.execute(sql, [*params, limit + 1, offset])
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    more = len(rows) > limit
    rows = rows[:limit]
    results = []
    for row in rows:
        source = json.loads(row.pop("_json") or "{}")
        item = _to_json(row)
        for keyword in include_fields:
            tag = f"{tag_for_keyword(keyword):08X}"
            if tag not in item and tag in source:
                item[tag] = source[tag]
        item["00080052"] = {
            "vr": "CS",
            "Value": [level if level != "INSTANCE" else "IMAGE"],
        }
        results.append(dict(sorted(item.items())))
    total = None
    if count_total:
        key = {
            "PATIENT": "st.patient_key",
            "STUDY": "st.study_uid",
            "SERIES": "se.series_uid",
            "INSTANCE": "i.sop_instance_uid",
        }[level]
        count_row = cur.execute(
            f"SELECT count(DISTINCT {key}) {_BASE} {clause}", params
        ).fetchone()
        total = int(count_row[0]) if count_row else 0
    return SearchPage(results, total, offset + limit if more else 0)
