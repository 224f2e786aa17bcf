"""Names of the structured log fields, and the one helper that writes them.

One INFO line per change of state of data, as ``key=value`` pairs. Values are
identifiers, sizes, checksums and operation ids only: never patient data.
"""

from __future__ import annotations

import logging
from typing import Any

EVENT = "event"
STUDY_UID = "study_uid"
SERIES_UID = "series_uid"
SOP_INSTANCE_UID = "sop_instance_uid"
TIER = "tier"
KEY = "key"
BYTES = "bytes"
SHA256 = "sha256"
OBJECTS = "objects"
FRAMES = "frames"
OP_ID = "op_id"
VERSION = "version"
REASON = "reason"
ERROR = "error"
SECONDS = "seconds"
COUNT = "count"
ADDRESS = "address"
DATA_DIR = "data_dir"

# Events: one per change of state of data.
INSTANCE_STORED = "instance.stored"
INSTANCE_REJECTED = "instance.rejected"
INSTANCE_DUPLICATE = "instance.duplicate"
WRITE_ROLLED_BACK = "write.rolled_back"
WRITE_ROLLED_FORWARD = "write.rolled_forward"
OBJECT_VERIFIED = "object.verified"
OBJECT_CORRUPT = "object.corrupt"
LEFTOVER_DELETED = "leftover.deleted"
INDEX_REBUILT = "index.rebuilt"
INDEX_REPLAYED = "index.replayed"
SERVER_STARTED = "server.started"
SERVER_STOPPED = "server.stopped"
INDEX_EXPORTED = "index.exported"
INDEX_ATTRIBUTE_ADDED = "index.attribute_added"
TABLE = "table"
ROWS = "rows"
URL = "url"
ATTRIBUTE_TAG = "tag"
COLUMN = "column"
SECONDS = "seconds"


def _format(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace('"', "'") + '"'
    return text


def log_event(
    logger: logging.Logger, event: str, level: int = logging.INFO, /, **fields: Any
) -> None:
    """Write one structured line: ``event=... key=value ...``."""
    if not logger.isEnabledFor(level):
        return
    parts = [f"{EVENT}={event}"]
    parts.extend(f"{k}={_format(v)}" for k, v in fields.items())
    logger.log(level, " ".join(parts))
