"""The analyst's schema: views over the index tables and tag macros.

Tables (typed columns, one row per entity): ``patients``, ``studies``,
``series``, ``instances`` (the last with each instance's full DICOM JSON in
``dicom_json`` and any extended attribute columns). Views:

``frame_layout``
    Per instance: frames, rows, columns, samples, bits, transfer syntax and
    the size of one decoded frame.
``tier_placement``
    Per instance: the tier holding it, its size, SHA-256, version, and when
    it was stored.
``instance_json``
    Per instance: its identifiers and DICOM JSON.
``dicom_dictionary``
    Every public DICOM keyword with its tag and VR.

Secondary indexes (ART) on ``studies.patient_id``, ``series.study_uid``,
``instances.study_uid`` and ``instances.series_uid`` let a search find one
page's children without scanning every instance.

Macros read any attribute by keyword, without JSON paths:
``dicom(dicom_json, 'SliceThickness')`` (first value, as text; person names
as their alphabetic form), ``dicom_number(...)`` (DOUBLE),
``dicom_date(...)`` (DATE), ``dicom_values(...)`` (every value, as a list of
text) and ``dicom_tag('SliceThickness')`` (``00180050``). A tag
``GGGGEEEE`` works in place of a keyword, for private tags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydicom._dicom_dict import DicomDictionary

if TYPE_CHECKING:
    import duckdb

_VIEWS = """
CREATE INDEX IF NOT EXISTS studies_patient_id ON studies (patient_id);
CREATE INDEX IF NOT EXISTS series_study_uid ON series (study_uid);
CREATE INDEX IF NOT EXISTS instances_study_uid ON instances (study_uid);
CREATE INDEX IF NOT EXISTS instances_series_uid ON instances (series_uid);
CREATE OR REPLACE VIEW frame_layout AS
SELECT sop_instance_uid, series_uid, study_uid, transfer_syntax_uid,
       number_of_frames, rows, columns, bits_allocated,
       TRY_CAST(json_extract_string(dicom_json, '$."00280002".Value[0]') AS INTEGER)
           AS samples_per_pixel,
       json_extract_string(dicom_json, '$."00280004".Value[0]')
           AS photometric_interpretation,
       CAST(rows AS BIGINT) * columns * (bits_allocated // 8) * coalesce(
           TRY_CAST(json_extract_string(dicom_json, '$."00280002".Value[0]')
                    AS INTEGER), 1) AS frame_bytes
FROM instances;
CREATE OR REPLACE VIEW tier_placement AS
SELECT sop_instance_uid, series_uid, study_uid, tier, size_bytes, sha256,
       version, stored_at
FROM instances;
CREATE OR REPLACE VIEW instance_json AS
SELECT sop_instance_uid, series_uid, study_uid, dicom_json FROM instances;
CREATE OR REPLACE MACRO dicom_tag(kw) AS coalesce(
    (SELECT d.tag FROM dicom_dictionary d WHERE d.keyword = kw),
    CASE WHEN regexp_full_match(kw, '[0-9A-Fa-f]{8}') THEN upper(kw) END);
CREATE OR REPLACE MACRO dicom_first(j, kw) AS
    json_extract(j, '$."' || dicom_tag(kw) || '".Value[0]');
CREATE OR REPLACE MACRO dicom(j, kw) AS
    CASE json_type(dicom_first(j, kw))
        WHEN 'OBJECT' THEN json_extract_string(
            dicom_first(j, kw), '$.Alphabetic')
        ELSE json_extract_string(dicom_first(j, kw), '$')
    END;
CREATE OR REPLACE MACRO dicom_number(j, kw) AS
    TRY_CAST(dicom(j, kw) AS DOUBLE);
CREATE OR REPLACE MACRO dicom_date(j, kw) AS
    CAST(try_strptime(dicom(j, kw), '%Y%m%d') AS DATE);
CREATE OR REPLACE MACRO dicom_values(j, kw) AS
    json_transform(
        json_extract(j, '$."' || dicom_tag(kw) || '".Value'), '["VARCHAR"]');
"""


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the dictionary table, indexes, views and macros (idempotent)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS dicom_dictionary "
        "(tag VARCHAR PRIMARY KEY, keyword VARCHAR, vr VARCHAR, name VARCHAR)"
    )
    row = con.execute("SELECT count(*) FROM dicom_dictionary").fetchone()
    if not row or not row[0]:
        entries = [
            (f"{tag:08X}", entry[4], entry[0], entry[2])
            for tag, entry in DicomDictionary.items()
            if entry[4]
        ]
        # One statement of four lists: executemany is a round trip per row.
        con.execute(
            "INSERT INTO dicom_dictionary "
            "SELECT unnest(?), unnest(?), unnest(?), unnest(?)",
            [list(column) for column in zip(*entries, strict=True)],
        )
    con.execute(_VIEWS)
