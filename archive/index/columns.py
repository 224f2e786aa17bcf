"""Typed index columns, pulled from an instance's DICOM JSON.

The DuckDB tables hold the usual query attributes as typed columns (dates as
DATE, numbers as INTEGER); everything else stays in the ``dicom_json``
column. These helpers read one attribute from PS3.18 Annex F JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydicom.datadict import tag_for_keyword


def tag_hex(keyword: str) -> str:
    """The 8-digit hex tag of a DICOM keyword, as DICOM JSON keys it."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return f"{tag:08X}"


def first(meta: dict[str, Any], keyword: str) -> Any:
    """The first value of an attribute, or None."""
    element = meta.get(tag_hex(keyword))
    if not element:
        return None
    values = element.get("Value")
    if not values:
        return None
    value = values[0]
    if isinstance(value, dict):  # person name
        return (
            value.get("Alphabetic") or value.get("Ideographic") or value.get("Phonetic")
        )
    return value


def text(meta: dict[str, Any], keyword: str) -> str | None:
    value = first(meta, keyword)
    return None if value is None else str(value)


def all_text(meta: dict[str, Any], keyword: str) -> list[str]:
    element = meta.get(tag_hex(keyword)) or {}
    return [str(v) for v in element.get("Value", []) if v is not None]


def integer(meta: dict[str, Any], keyword: str) -> int | None:
    value = first(meta, keyword)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def date(meta: dict[str, Any], keyword: str) -> dt.date | None:
    """A DA value as a date; None when absent or not a valid date."""
    value = text(meta, keyword)
    if not value:
        return None
    value = value.strip().replace(".", "")  # ACR-NEMA wrote YYYY.MM.DD
    try:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return None
