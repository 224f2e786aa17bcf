"""gRPC handlers of the change feed and the replication status.

Bound into the servicers of ``grpc_server`` (which wraps them to map errors
to statuses); nothing is decided here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from dicomvault.archive.replication import change_to_json
from dicomvault.proto import replication_pb2


def watch_changes(
    self: Any,
    request: replication_pb2.WatchChangesRequest,
    context: grpc.ServicerContext,
) -> Iterator[replication_pb2.Change]:
    """Archive.WatchChanges: the change log from a sequence number, then live."""
    for change in self.archive.watch_changes(request.from_sequence, context.is_active):
        yield replication_pb2.Change(
            sequence=int(change["seq"]),
            type=change["type"],
            study_uid=change.get("study_uid", ""),
            series_uid=change.get("series_uid", ""),
            sop_instance_uid=change.get("sop_instance_uid", ""),
            version=change.get("version", ""),
            tier=change.get("tier", ""),
            change_json=change_to_json(change),
        )


def replication_status(
    self: Any,
    request: replication_pb2.ReplicationStatusRequest,
    context: grpc.ServicerContext,
) -> replication_pb2.ReplicationStatusResponse:
    """Admin.ReplicationStatus: per region lag and last error."""
    return replication_pb2.ReplicationStatusResponse(
        regions=[
            replication_pb2.RegionStatus(
                region=s.region,
                cursor=s.cursor,
                last_sequence=s.last_sequence,
                pending_changes=s.pending_changes,
                pending_bytes=s.pending_bytes,
                oldest_pending_age_seconds=s.oldest_pending_age_seconds,
                last_error=s.last_error,
            )
            for s in self.archive.replication_status()
        ]
    )
