"""Extended query attributes: tags an administrator adds to the index.

An extended attribute is a DICOM tag (public or private) that becomes a
typed column of the ``instances`` table, named ``x_<keyword>`` in snake case
(``x_slice_thickness``) or ``x_gggg_eeee`` for a private tag. Adding one
back-fills the column for every stored instance from its DICOM JSON, in one
transaction; instances stored later get it filled as they are indexed, and
an index rebuild refills it. From then on search matches on the column and
SQL sees it like any other.

The registry is the ``extended_attributes`` table, in the same DuckDB file
(derived data, like the rest of the index: a rebuild keeps the registry and
recomputes the values).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicomvault.archive.errors import InvalidInputError, RefusedError

if TYPE_CHECKING:
    import duckdb

    from dicomvault.archive.index.metadata import MetadataIndex

# SQL type of a column, by VR; every other VR is stored as VARCHAR.
SQL_TYPES = {
    "DA": "DATE",
    "IS": "BIGINT",
    "SS": "BIGINT",
    "US": "BIGINT",
    "SL": "BIGINT",
    "UL": "BIGINT",
    "SV": "BIGINT",
    "UV": "BIGINT",
    "DS": "DOUBLE",
    "FL": "DOUBLE",
    "FD": "DOUBLE",
}
_VR = re.compile(r"^[A-Z]{2}$")
# Tag -> column per open index; every search reads it, only adding changes it.
_COLUMNS: weakref.WeakKeyDictionary[MetadataIndex, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class ExtendedAttribute:
    """One extended attribute and how many instances have a value for it."""

    tag: str
    keyword: str
    vr: str
    column: str
    sql_type: str
    filled: int = 0
    seconds: float = 0.0


def value_sql(tag: str, vr: str, source: str = "dicom_json") -> str:
    """The SQL expression that reads the first value of ``tag`` as its type."""
    path = f'\'$."{tag}".Value[0]' + (".Alphabetic'" if vr == "PN" else "'")
    text = f"json_extract_string({source}, {path})"
    sql_type = SQL_TYPES.get(vr, "VARCHAR")
    if sql_type == "DATE":
        return f"CAST(try_strptime({text}, '%Y%m%d') AS DATE)"
    if sql_type == "BIGINT":
        return f"TRY_CAST(TRY_CAST({text} AS DOUBLE) AS BIGINT)"
    return f"TRY_CAST({text} AS {sql_type})"


def _column_name(tag: str, keyword: str) -> str:
    if keyword == tag:
        return f"x_{tag[:4].lower()}_{tag[4:].lower()}"
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", keyword).lower()
    return f"x_{snake}"


def parse_tag(key: str) -> int | None:
    """The tag of a keyword or of eight hex digits; None when neither."""
    text = key.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return int(text, 16)
    found: int | None = tag_for_keyword(text)
    return found


def plan_attribute(key: str, vr: str = "") -> ExtendedAttribute:
    """Resolve a keyword or ``GGGGEEEE`` tag to the column it would become.

    Raises
    ------
    InvalidInputError
        Not a keyword or tag, or a private tag given without its VR.
    """
    tag_int = parse_tag(key)
    if tag_int is None:
        raise InvalidInputError(
            f"{key!r} is not a DICOM keyword or a tag GGGGEEEE; "
            "give a keyword such as 'SliceThickness' or a tag such as '00180050'"
        )
    tag = f"{tag_int:08X}"
    keyword = keyword_for_tag(tag_int) or tag
    if not vr:
        try:
            vr = dictionary_VR(tag_int)
        except KeyError:
            raise InvalidInputError(
                f"tag {tag} is private or unknown, so its VR cannot be looked up; "
                "give the VR (for example --vr DS)"
            ) from None
    vr = vr.upper()
    if not _VR.match(vr) or vr in ("SQ", "OB", "OW", "OF", "OD", "OL", "UN"):
        raise InvalidInputError(
            f"VR {vr!r} of {tag} cannot be an index column; "
            "use a VR of text, numbers, dates or times"
        )
    return ExtendedAttribute(
        tag, keyword, vr, _column_name(tag, keyword), SQL_TYPES.get(vr, "VARCHAR")
    )


def list_attributes(index: MetadataIndex) -> list[ExtendedAttribute]:
    """The registered extended attributes, in the order they were added."""
    rows = (
        index.cursor()
        .execute(
            "SELECT tag, keyword, vr, column_name, sql_type FROM extended_attributes "
            "ORDER BY added_at, tag"
        )
        .fetchall()
    )
    return [ExtendedAttribute(*row) for row in rows]


def columns(index: MetadataIndex) -> dict[str, str]:
    """Tag to column name, for every extended attribute."""
    cached = _COLUMNS.get(index)
    if cached is None:
        cached = {a.tag: a.column for a in list_attributes(index)}
        _COLUMNS[index] = cached
    return cached


def add_attribute(index: MetadataIndex, key: str, vr: str = "") -> ExtendedAttribute:
    """Add a column for ``key`` to ``instances`` and back-fill every row.

    Changes the index: one ALTER TABLE and one UPDATE over every instance,
    in one transaction, so a failure leaves the index as it was.

    Raises
    ------
    InvalidInputError
        See :func:`plan_attribute`.
    RefusedError
        The attribute is already an extended attribute.
    """
    attribute = plan_attribute(key, vr)
    if attribute.tag in columns(index):
        raise RefusedError(
            f"{attribute.keyword} ({attribute.tag}) is already an extended "
            f"attribute, column instances.{attribute.column}; nothing to do"
        )

    started = time.monotonic()
    with index.writing() as cur:
        cur.execute(
            f"ALTER TABLE instances ADD COLUMN {attribute.column} {attribute.sql_type}"
        )
        cur.execute(
            f"UPDATE instances SET {attribute.column} = "
            f"{value_sql(attribute.tag, attribute.vr)}"
        )
        cur.execute(
            "INSERT INTO extended_attributes VALUES (?, ?, ?, ?, ?, ?)",
            [
                attribute.tag,
                attribute.keyword,
                attribute.vr,
                attribute.column,
                attribute.sql_type,
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
            ],
        )
        row = cur.execute(f"SELECT count({attribute.column}) FROM instances").fetchone()
    _COLUMNS.pop(index, None)
    filled = int(row[0]) if row else 0
    return ExtendedAttribute(
        attribute.tag,
        attribute.keyword,
        attribute.vr,
        attribute.column,
        attribute.sql_type,
        filled,
        time.monotonic() - started,
    )


def fill_sql(index_columns: list[tuple[str, str, str]]) -> str:
    """One UPDATE that fills every extended column of one instance."""
    sets = ", ".join(f"{col} = {value_sql(tag, vr)}" for tag, vr, col in index_columns)
    return f"UPDATE instances SET {sets} WHERE sop_instance_uid = ?"


def registered(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(tag, vr, column) of every extended attribute, read with ``cur``."""
    return [
        (str(r[0]), str(r[1]), str(r[2]))
        for r in cur.execute(
            "SELECT tag, vr, column_name FROM extended_attributes ORDER BY added_at"
        ).fetchall()
    ]
