"""Limits on hostile or runaway input, checked before anything is stored.

Each limit is a setting (``ingest.max_upload_bytes``,
``ingest.max_sequence_depth``, ``ingest.max_element_bytes``; the size of one
instance is ``ingest.max_instance_bytes``, enforced while it is spooled). A
breach is a :class:`~dicomvault.archive.errors.LimitExceededError` whose
message names the setting, the value found and the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from dicomvault.archive.dissect import _looks_like_dicom
from dicomvault.archive.errors import LimitExceededError

if TYPE_CHECKING:
    from dicomvault.archive.config import Settings

# A length field of 0xFFFFFFFF means "undefined length, delimited by items";
# it is not a size.
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The configured input limits of one archive."""

    max_upload_bytes: int
    max_sequence_depth: int
    max_element_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> InputLimits:
        return cls(
            settings.get("ingest.max_upload_bytes"),
            settings.get("ingest.max_sequence_depth"),
            settings.get("ingest.max_element_bytes"),
        )


def upload_too_large(received: int, limit: int) -> LimitExceededError:
    """The error for a Store stream that grew past ``ingest.max_upload_bytes``."""
    return LimitExceededError(
        f"upload stream carried more than ingest.max_upload_bytes ({limit} bytes) "
        f"after {received} bytes; it was cut off and nothing of the unfinished "
        "instance was stored; send fewer or smaller instances per Store call"
    )


def _length(element: DataElement | RawDataElement) -> int:
    if isinstance(element, RawDataElement):
        return 0 if element.length == _UNDEFINED_LENGTH else element.length
    value = element.value
    if isinstance(value, bytes | str):
        return len(value)
    return 0


def check_header(path: Path, limits: InputLimits) -> None:
    """Refuse a spooled instance whose header breaks a nesting or length limit.

    The header is read up to the pixel data, with values longer than the
    element limit left unread, and walked without recursion. The pixel data
    element itself is bounded by ``ingest.max_instance_bytes`` instead.

    Raises
    ------
    LimitExceededError
        A sequence nests deeper than ``ingest.max_sequence_depth`` or an
        element holds more than ``ingest.max_element_bytes``.
    """
    with open(path, "rb") as fh:
        if not _looks_like_dicom(fh.read(132)):
            # Not DICOM at all: dissect says so with its own message.
            return
    try:
        ds = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            force=True,
            defer_size=limits.max_element_bytes + 1,
        )
    except RecursionError:
        raise _too_deep(None, "more than the parser can hold", limits) from None
    except Exception:  # noqa: BLE001 - malformed input is dissect's to report
        return

    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        dataset, depth = stack.pop()
        for tag in list(dataset.keys()):
            try:
                element = dataset.get_item(tag, keep_deferred=True)
            except Exception:  # noqa: BLE001 - a malformed element is dissect's
                continue
            length = _length(element)
            if length > limits.max_element_bytes:
                raise LimitExceededError(
                    f"element {tag} holds {length} bytes, above "
                    f"ingest.max_element_bytes ({limits.max_element_bytes} "
                    "bytes); nothing was stored"
                )
            if element.VR != "SQ":
                continue
            try:
                items = dataset[tag].value
            except Exception:  # noqa: BLE001 - a malformed sequence is dissect's
                continue
            if depth + 1 > limits.max_sequence_depth:
                raise _too_deep(tag, str(depth + 1), limits)
            stack.extend((item, depth + 1) for item in items)


def _too_deep(tag: object, depth: str, limits: InputLimits) -> LimitExceededError:
    where = f" at element {tag}" if tag is not None else ""
    return LimitExceededError(
        f"sequences nest {depth} levels deep{where}, above "
        f"ingest.max_sequence_depth ({limits.max_sequence_depth}); nothing was "
        "stored"
    )
