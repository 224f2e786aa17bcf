"""A data set as DICOM JSON (PS3.18 Annex F), bulk data left out.

Values longer than the bulk data threshold in binary VRs are replaced by a
``BulkDataURI`` relative to the instance (``bulkdata/GGGGEEEE``); the bytes
stay in the stored objects. Elements pydicom cannot convert are dropped from
the JSON (never from the stored file).
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

BULK_DATA_THRESHOLD = 1024


def _bulk_uri(element: DataElement) -> str:
    return f"bulkdata/{element.tag:08X}"


def dataset_to_json(ds: Dataset) -> dict[str, Any]:
    """The data set (without file meta and pixel data) as a DICOM JSON dict."""
    try:
        return ds.to_json_dict(
            bulk_data_threshold=BULK_DATA_THRESHOLD,
            bulk_data_element_handler=_bulk_uri,
            suppress_invalid_tags=True,
        )
    except Exception:  # noqa: BLE001 - fall back element by element
        out: dict[str, Any] = {}
        for element in ds:
            try:
                out[f"{element.tag:08X}"] = element.to_json_dict(
                    _bulk_uri, BULK_DATA_THRESHOLD
                )
            except Exception:  # noqa: BLE001
                logger.debug("element %08X left out of the JSON metadata", element.tag)
        return out
