"""DICOM identifiers as distinct types, and the checks that make them safe.

A UID (PS3.5 section 9.1) is digits and dots, at most 64 characters; values
may be padded with a trailing NUL or space. Everything stored is keyed by
UIDs, so a UID is checked before it is ever used in an object key.
"""

from __future__ import annotations

import re
from typing import NewType

from dicomvault.archive.errors import UnsafeUIDError

StudyUID = NewType("StudyUID", str)
SeriesUID = NewType("SeriesUID", str)
SOPInstanceUID = NewType("SOPInstanceUID", str)

# Leading zeros in a component are not conformant but common in real data;
# they are harmless in a path, so they are accepted.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LENGTH = 64

# Placeholder key component for an instance that has no study or series UID.
MISSING = "_"


def clean_uid(value: object) -> str:
    """Strip the padding a UID value may carry."""
    return str(value).rstrip("\x00 ").lstrip(" ")


def check_uid(value: str, keyword: str) -> str:
    """Return ``value`` if it is a well-formed UID.

    Raises
    ------
    UnsafeUIDError
        If the UID is empty, too long, or holds anything but digits and dots
        (``../``, ``/`` and NUL included).
    """
    if not _UID.match(value) or len(value) > MAX_UID_LENGTH:
        raise UnsafeUIDError(
            f"{keyword} {value[:80]!r} is not a valid UID: a UID is digits and "
            f"dots, at most {MAX_UID_LENGTH} characters (PS3.5 section 9.1)"
        )
    return value
