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
FROM_TIER = "from_tier"
TO_TIER = "to_tier"
STEP = "step"

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
DEID_WRITTEN = "deid.written"
SOURCE_SOP_INSTANCE_UID = "source_sop_instance_uid"
BURNED_IN = "burned_in"
STUDY_MOVED = "study.moved"
MOVE_FAILED = "move.failed"
MOVE_PAUSED = "move.paused"
MOVE_ROLLED_BACK = "move.rolled_back"
MOVE_ROLLED_FORWARD = "move.rolled_forward"
POLICY_SET = "lifecycle.policy_set"
LIFECYCLE_APPLIED = "lifecycle.applied"
LIFECYCLE_GUARD_STOPPED = "lifecycle.guard_stopped"
LIFECYCLE_FAILED = "lifecycle.failed"
INSTANCES_DELETED = "instances.deleted"
INSTANCES_RESTORED = "instances.restored"
STUDY_PURGED = "study.purged"
HOLD_ADDED = "hold.added"
HOLD_REMOVED = "hold.removed"
STUDY_PROMOTED = "study.promoted"
PROMOTION_FAILED = "promotion.failed"
INDEX_EXPORTED = "index.exported"
INDEX_ATTRIBUTE_ADDED = "index.attribute_added"
TABLE = "table"
ROWS = "rows"
URL = "url"
ATTRIBUTE_TAG = "tag"
COLUMN = "column"


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


# Audit trail (see archive.audit): one INFO line per recorded audit event.
AUDIT_RECORDED = "audit.recorded"
AUDIT_EVENT_ID = "audit_event_id"
AUDIT_ACTION = "audit_action"
AUDIT_OUTCOME = "audit_outcome"
AUDIT_USER = "user"
AUDIT_REQUEST = "request"
AUTH_OPEN = "auth.open"
# Replication, change feed, repair and disaster-recovery drills.
REGION = "region"
SEQ = "seq"
CHANGE_TYPE = "change_type"
CHANGE_REPLICATED = "change.replicated"
REPLICA_LAGGING = "replica.lagging"
REPLICA_OBJECT_DELETED = "replica.object_deleted"
REPLICATION_STARTED = "replication.started"
OBJECT_REPAIRED = "object.repaired"
READ_FAILOVER = "read.failover"
DR_DRILL_FINISHED = "dr.drill_finished"
