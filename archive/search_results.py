"""Search results: one page of entity keys turned into DICOM JSON.

Each level returns its identifying attributes, the attributes the index
holds as typed columns, and the computed attributes of PS3.18 10.6.3
(NumberOfPatientRelatedStudies, NumberOfStudyRelatedSeries,
NumberOfStudyRelatedInstances, ModalitiesInStudy,
NumberOfSeriesRelatedInstances). Requested extra attributes are copied from
the DICOM JSON of one instance of the entity.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb
from pydicom.datadict import dictionary_VR, tag_for_keyword

_SQL = {
    "PATIENT": """
        SELECT pa.patient_key AS _key, pa.patient_id AS PatientID,
               pa.patient_name AS PatientName,
               pa.issuer_of_patient_id AS IssuerOfPatientID,
               pa.patient_birth_date AS PatientBirthDate,
               pa.patient_sex AS PatientSex,
               (SELECT count(*) FROM studies st
                WHERE st.patient_key = pa.patient_key)
                   AS NumberOfPatientRelatedStudies,
               (SELECT count(*) FROM series se JOIN studies st USING (study_uid)
                WHERE st.patient_key = pa.patient_key)
                   AS NumberOfPatientRelatedSeries,
               (SELECT count(*) FROM instances i JOIN studies st USING (study_uid)
                WHERE st.patient_key = pa.patient_key)
                   AS NumberOfPatientRelatedInstances,
               (SELECT {json_any} FROM instances i
                JOIN studies st USING (study_uid)
                WHERE st.patient_key = pa.patient_key) AS _json
        FROM patients pa WHERE pa.patient_key IN (SELECT unnest(?::VARCHAR[]))
    """,
    "STUDY": """
        WITH se_agg AS (
            SELECT study_uid, list_sort(list_distinct(list(modality)))
                       AS ModalitiesInStudy,
                   count(*) AS NumberOfStudyRelatedSeries
            FROM series WHERE study_uid IN (SELECT unnest(?::VARCHAR[]))
            GROUP BY study_uid
        ), i_agg AS (
            SELECT study_uid, count(*) AS NumberOfStudyRelatedInstances,
                   {json_study} AS _json
            FROM instances WHERE study_uid IN (SELECT unnest(?::VARCHAR[]))
            GROUP BY study_uid
        )
        SELECT st.study_uid AS _key, st.study_uid AS StudyInstanceUID,
               st.study_date AS StudyDate, st.study_time AS StudyTime,
               st.accession_number AS AccessionNumber,
               st.patient_id AS PatientID, st.patient_name AS PatientName,
               st.study_id AS StudyID, st.study_description AS StudyDescription,
               st.referring_physician_name AS ReferringPhysicianName,
               se_agg.ModalitiesInStudy, se_agg.NumberOfStudyRelatedSeries,
               i_agg.NumberOfStudyRelatedInstances, i_agg._json
        FROM studies st
        LEFT JOIN se_agg USING (study_uid) LEFT JOIN i_agg USING (study_uid)
        WHERE st.study_uid IN (SELECT unnest(?::VARCHAR[]))
    """,
    "SERIES": """
        WITH i_agg AS (
            SELECT series_uid, count(*) AS NumberOfSeriesRelatedInstances,
                   {json_study} AS _json
            FROM instances WHERE series_uid IN (SELECT unnest(?::VARCHAR[]))
            GROUP BY series_uid
        )
        SELECT se.series_uid AS _key, se.series_uid AS SeriesInstanceUID,
               se.study_uid AS StudyInstanceUID, se.modality AS Modality,
               se.series_number AS SeriesNumber,
               se.series_description AS SeriesDescription,
               se.body_part_examined AS BodyPartExamined,
               se.series_date AS SeriesDate,
               i_agg.NumberOfSeriesRelatedInstances, i_agg._json
        FROM series se LEFT JOIN i_agg USING (series_uid)
        WHERE se.series_uid IN (SELECT unnest(?::VARCHAR[]))
    """,
    "INSTANCE": """
        SELECT i.sop_instance_uid AS _key, i.sop_instance_uid AS SOPInstanceUID,
               i.sop_class_uid AS SOPClassUID, i.series_uid AS SeriesInstanceUID,
               i.study_uid AS StudyInstanceUID, i.instance_number AS InstanceNumber,
               i.rows AS Rows, i.columns AS Columns,
               i.number_of_frames AS NumberOfFrames, i.dicom_json AS _json
        FROM instances i WHERE i.sop_instance_uid IN (SELECT unnest(?::VARCHAR[]))
    """,
}
_MARK_COUNT = {"PATIENT": 1, "STUDY": 3, "SERIES": 2, "INSTANCE": 1}
_RETRIEVE_LEVEL = {"PATIENT": "PATIENT", "STUDY": "STUDY", "SERIES": "SERIES"}


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
    return out


def fetch_page(
    cur: duckdb.DuckDBPyConnection,
    level: str,
    keys: list[str],
    include: list[str] | None,
) -> list[dict[str, Any]]:
    """The DICOM JSON of each key, in the order of ``keys``.

    ``include`` lists the tags to copy from the DICOM JSON; None copies all.
    """
    if not keys:
        return []
    # The DICOM JSON is read only when attributes are asked from it: reading
    # it for every instance of a page of studies is most of a search's time.
    wanted = include is None or bool(include)
    sql = _SQL[level].format(
        json_any="any_value(i.dicom_json)" if wanted else "any_value(NULL)",
        json_study="any_value(dicom_json)" if wanted else "NULL",
    )
    cur.execute(sql, [keys] * _MARK_COUNT[level])
    names = [d[0] for d in cur.description or []]
    by_key = {}
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        by_key[row.pop("_key")] = row

    results = []
    for key in keys:
        row = by_key[key]
        source = json.loads(row.pop("_json") or "{}")
        item = _to_json(row)
        for tag in source if include is None else include:
            if tag not in item and tag in source:
                item[tag] = source[tag]
        item["00080052"] = {
            "vr": "CS",
            "Value": [_RETRIEVE_LEVEL.get(level, "IMAGE")],
        }
        results.append(dict(sorted(item.items())))
    return results
