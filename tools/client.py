"""A small gRPC client for the dicomvault services, used by the CLI.

Other programs can use the generated stubs in ``dicomvault.proto`` directly;
this module only adds the chunked upload and frame reassembly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

from dicomvault.proto import (
    admin_pb2,
    admin_pb2_grpc,
    archive_pb2,
    archive_pb2_grpc,
    common_pb2,
    lifecycle_pb2,
    query_pb2,
    query_pb2_grpc,
)
from dicomvault.tools.client_security import BearerToken, Security

CHUNK_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 64 << 20
OUTCOME_NAMES = {
    archive_pb2.STORED: "stored",
    archive_pb2.DUPLICATE: "duplicate",
    archive_pb2.REJECTED: "rejected",
    archive_pb2.STORED_NEW_VERSION: "stored_new_version",
}


def connect(address: str, security: Security | None = None) -> grpc.Channel:
    """A channel to a dicomvault server with large message limits.

    Plain (insecure) unless ``security`` names a CA or a client certificate;
    a token in ``security`` is sent as ``authorization: Bearer ...`` on
    every call.
    """
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    security = security or Security()
    credentials = security.channel_credentials()
    if credentials is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, credentials, options=options)
    if security.token:
        channel = grpc.intercept_channel(channel, BearerToken(security.token))
    return channel


def upload_messages(
    files: Iterable[Path], calling_application: str = "dicomvault-cli"
) -> Iterator[archive_pb2.StoreRequest]:
    """StoreRequest messages for files: start, chunks, end, for each file."""
    for path in files:
        size = path.stat().st_size
        yield archive_pb2.StoreRequest(
            start=archive_pb2.StoreStart(
                label=str(path), size=size, calling_application=calling_application
            )
        )
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield archive_pb2.StoreRequest(chunk=chunk)
        yield archive_pb2.StoreRequest(end=archive_pb2.StoreEnd())


class Client:
    """Calls on one dicomvault server."""

    def __init__(self, address: str, security: Security | None = None):
        self.channel = connect(address, security)
        self.archive = archive_pb2_grpc.ArchiveStub(self.channel)
        self.query = query_pb2_grpc.QueryStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def store(self, files: list[Path]) -> list[archive_pb2.StoreResult]:
        """Upload files in one stream; one result per file."""
        return list(self.archive.Store(upload_messages(files)).results)

    def retrieve(
        self, sop_uid: str, out: Path, version: str = ""
    ) -> common_pb2.InstanceInfo:
        """Write one instance to ``out``; the file appears only when complete."""
        tmp = out.with_name(out.name + ".part")
        info = None
        try:
            with open(tmp, "wb") as fh:
                for chunk in self.archive.Retrieve(
                    archive_pb2.RetrieveRequest(
                        sop_instance_uid=sop_uid, version=version
                    )
                ):
                    if chunk.HasField("info"):
                        info = chunk.info
                    fh.write(chunk.data)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        assert info is not None
        return info

    def frames(
        self, sop_uid: str, numbers: list[int], decode: bool
    ) -> Iterator[tuple[int, common_pb2.PixelDescription, bytes]]:
        """Yield (number, description, bytes) of each requested frame."""
        parts: list[bytes] = []
        pixel = None
        for part in self.archive.GetFrames(
            archive_pb2.GetFramesRequest(
                sop_instance_uid=sop_uid, frame_numbers=numbers, decode=decode
            )
        ):
            if part.HasField("pixel"):
                pixel = part.pixel
                parts = []
            parts.append(part.data)
            if part.offset + len(part.data) >= part.frame_size:
                assert pixel is not None
                yield part.frame_number, pixel, b"".join(parts)

    def search(
        self, level: int, match: dict[str, str], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Every match at ``level``, following pages to the end."""
        results: list[dict[str, Any]] = []
        offset = 0
        while True:
            reply = self.archive.Search(
                archive_pb2.SearchRequest(
                    level=level,
                    match=match,
                    offset=offset,
                    limit=kwargs.get("limit", 1000),
                    include_fields=kwargs.get("include_fields", []),
                )
            )
            results.extend(json.loads(r.dicom_json) for r in reply.results)
            if not reply.next_offset:
                return results
            offset = reply.next_offset

    def sql(self, statement: str) -> tuple[list[str], list[list[Any]]]:
        """Run SQL; return column names and all rows."""
        columns: list[str] = []
        rows: list[list[Any]] = []
        for batch in self.query.Sql(query_pb2.SqlRequest(sql=statement)):
            if batch.columns:
                columns = list(batch.columns)
            rows.extend(json.loads(batch.rows_json))
        return columns, rows

    def rebuild_index(self) -> admin_pb2.RebuildIndexResponse:
        return self.admin.RebuildIndex(admin_pb2.RebuildIndexRequest())

    def verify(self, repair: bool) -> admin_pb2.VerifyResponse:
        return self.admin.Verify(admin_pb2.VerifyRequest(repair=repair))

    def move_study(self, study_uid: str, to_tier: str) -> Any:
        """Move a study to another tier (Admin.MoveStudy)."""
        return self.admin.MoveStudy(
            lifecycle_pb2.MoveStudyRequest(study_uid=study_uid, to_tier=to_tier)
        )

    def tier_status(self) -> Any:
        """Per-tier figures and moves (Admin.TierStatus)."""
        return self.admin.TierStatus(lifecycle_pb2.TierStatusRequest())

    def get_policy(self) -> Any:
        """The lifecycle rule set in force (Admin.GetPolicy)."""
        return self.admin.GetPolicy(lifecycle_pb2.GetPolicyRequest())

    def set_policy(self, text: str) -> Any:
        """Replace the lifecycle rule set (Admin.SetPolicy)."""
        return self.admin.SetPolicy(lifecycle_pb2.SetPolicyRequest(text=text))

    def apply_policy(self, dry_run: bool, confirm: bool) -> Any:
        """Plan or apply the lifecycle rules now (Admin.ApplyPolicy)."""
        return self.admin.ApplyPolicy(
            lifecycle_pb2.ApplyPolicyRequest(dry_run=dry_run, confirm=confirm)
        )

    def set_retention(self, text: str) -> Any:
        """Replace the retention rules (Admin.SetRetention)."""
        return self.admin.SetRetention(lifecycle_pb2.SetPolicyRequest(text=text))

    def preview_retention(self) -> Any:
        """Studies the retention rules would delete (Admin.PreviewRetention)."""
        return self.admin.PreviewRetention(lifecycle_pb2.RetentionPreviewRequest())

    def hold(
        self, action: str, kind: str = "", value: str = "", reason: str = ""
    ) -> Any:
        """Add, remove or list legal holds (Admin.AddHold/RemoveHold/ListHolds)."""
        if action == "list":
            return self.admin.ListHolds(lifecycle_pb2.ListHoldsRequest())
        request = lifecycle_pb2.HoldRequest(kind=kind, value=value, reason=reason)
        call = self.admin.AddHold if action == "add" else self.admin.RemoveHold
        return call(request)

    def apply_retention(self, confirm: bool) -> Any:
        """Mark due, unheld studies deleted (Admin.ApplyRetention)."""
        return self.admin.ApplyRetention(
            lifecycle_pb2.ApplyPolicyRequest(confirm=confirm)
        )

    def purge_due(self) -> Any:
        """Purge what is past the grace period (Admin.PurgeDue)."""
        return self.admin.PurgeDue(lifecycle_pb2.PurgeRequest())
