"""The gRPC front door: parse requests, call the archive, map errors.

No storage decision is made here. Every handler turns an archive error into
one status (see ``status``) and a log line; the server keeps serving.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dicomvault.archive import logkeys as lk
from dicomvault.archive.api import replication_api
from dicomvault.archive.api.deid_rpc import DeidAdminMixin
from dicomvault.archive.api.security import (
    SecurityInterceptor,
    current_principal,
    server_credentials,
)
from dicomvault.archive.api.status import grpc_status
from dicomvault.archive.api.upload_limits import cap_store_stream
from dicomvault.archive.errors import DicomVaultError, InvalidInputError
from dicomvault.archive.service import Archive, Upload
from dicomvault.proto import (
    admin_pb2,
    admin_pb2_grpc,
    archive_pb2,
    archive_pb2_grpc,
    common_pb2,
    query_pb2,
    query_pb2_grpc,
)
from dicomvault.tiers.errors import TierError

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 << 20
FRAME_PART_BYTES = 2 << 20
_OUTCOMES = {
    "stored": archive_pb2.STORED,
    "duplicate": archive_pb2.DUPLICATE,
    "stored_new_version": archive_pb2.STORED_NEW_VERSION,
}
_LEVELS = {
    archive_pb2.PATIENT: "PATIENT",
    archive_pb2.STUDY: "STUDY",
    archive_pb2.SERIES: "SERIES",
    archive_pb2.INSTANCE: "INSTANCE",
}

F = TypeVar("F", bound=Callable[..., Any])


def _abort(context: grpc.ServicerContext, err: BaseException, method: str) -> None:
    status = grpc_status(err)
    if status == grpc.StatusCode.INTERNAL:
        logger.exception("internal error in %s", method)
        message = f"internal error ({type(err).__name__}); see the server log"
    else:
        logger.info(
            "%s refused: status=%s error=%s", method, status.name, type(err).__name__
        )
        message = str(err)
    context.abort(status, message)


def unary(method: F) -> F:
    """Map errors of a unary handler to statuses."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except (DicomVaultError, TierError, Exception) as err:  # noqa: BLE001
            if isinstance(err, grpc.RpcError):
                raise
            _abort(context, err, method.__name__)

    return wrapper  # type: ignore[return-value]


def streaming(method: F) -> F:
    """Map errors of a server-streaming handler to statuses."""

    @functools.wraps(method)
    def wrapper(
        self: Any, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as err:  # noqa: BLE001
            if isinstance(err, grpc.RpcError):
                raise
            _abort(context, err, method.__name__)

    return wrapper  # type: ignore[return-value]


class ArchiveServicer(archive_pb2_grpc.ArchiveServicer):  # type: ignore[misc]
    """Archive service: Store, Retrieve, GetFrames, Search."""

    def __init__(self, archive: Archive):
        self.archive = archive

    def Store(  # noqa: N802 - gRPC method name
        self,
        request_iterator: Iterator[archive_pb2.StoreRequest],
        context: grpc.ServicerContext,
    ) -> archive_pb2.StoreResponse:
        request_iterator = cap_store_stream(
            request_iterator,
            context,
            self.archive.settings.get("ingest.max_upload_bytes"),
        )
        results: list[archive_pb2.StoreResult] = []
        upload: Upload | None = None
        start: archive_pb2.StoreStart | None = None
        failed: str | None = None

        def reject_open(reason: str) -> None:
            nonlocal upload, start, failed
            assert start is not None
            if upload is not None:
                if start.size:
                    reason = (
                        f"truncated upload: {upload.hash.size} of {start.size} "
                        "declared bytes arrived before the upload ended"
                    )
                upload.discard()
            results.append(
                archive_pb2.StoreResult(
                    label=start.label,
                    outcome=archive_pb2.REJECTED,
                    reason=failed or reason,
                )
            )
            upload, start, failed = None, None, None

        try:
            for message in request_iterator:
                part = message.WhichOneof("part")
                if part == "start":
                    if start is not None:
                        reject_open(
                            "upload ended without a StoreEnd message before the "
                            "next StoreStart; it was not stored"
                        )
                    start = message.start
                    try:
                        upload = self.archive.begin_upload(start.size, start.sha256)
                    except DicomVaultError as err:
                        failed = str(err)
                elif start is None:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"a {part} message arrived before any StoreStart message",
                    )
                elif part == "chunk":
                    if upload is not None:
                        try:
                            upload.write(message.chunk)
                        except DicomVaultError as err:
                            failed = str(err)
                            upload.discard()
                            upload = None
                elif part == "end":
                    if upload is None:
                        reject_open(failed or "upload failed")
                    else:
                        results.append(self._store_one(upload, start))
                        upload, start, failed = None, None, None
            if start is not None:
                reject_open(
                    "upload ended without a StoreEnd message; it may be incomplete, "
                    "so it was not stored"
                )
        finally:
            if upload is not None:
                upload.discard()
        return archive_pb2.StoreResponse(results=results)

    def _store_one(
        self, upload: Upload, start: archive_pb2.StoreStart
    ) -> archive_pb2.StoreResult:
        try:
            outcome = self.archive.store_upload(upload, start.calling_application)
        except (DicomVaultError, TierError) as err:
            lk.log_event(
                logger, lk.INSTANCE_REJECTED, **{lk.REASON: type(err).__name__}
            )
            return archive_pb2.StoreResult(
                label=start.label, outcome=archive_pb2.REJECTED, reason=str(err)
            )
        except Exception as err:  # noqa: BLE001 - one bad file must not end the stream
            logger.exception("unexpected error storing an upload")
            return archive_pb2.StoreResult(
                label=start.label,
                outcome=archive_pb2.REJECTED,
                reason=f"internal error ({type(err).__name__}); see the server log",
            )
        return archive_pb2.StoreResult(
            label=start.label,
            sop_instance_uid=outcome.sop_instance_uid,
            outcome=_OUTCOMES[outcome.outcome],
            reason=outcome.reason,
            study_uid=outcome.study_uid,
            series_uid=outcome.series_uid,
            sha256=outcome.sha256,
            size=outcome.size,
            version=outcome.version,
        )

    @streaming
    def Retrieve(  # noqa: N802
        self, request: archive_pb2.RetrieveRequest, context: grpc.ServicerContext
    ) -> Iterator[archive_pb2.RetrieveChunk]:
        record, stream = self.archive.retrieve(
            request.sop_instance_uid, request.version
        )
        version = self.archive.reader.version(record, request.version)
        info = common_pb2.InstanceInfo(
            sop_instance_uid=record.sop_instance_uid,
            sop_class_uid=version.sop_class_uid,
            study_uid=record.study_uid,
            series_uid=record.series_uid,
            transfer_syntax_uid=version.transfer_syntax_uid,
            size=version.size,
            sha256=version.sha256,
            number_of_frames=version.frames,
            tier=version.tier,
            version=version.version,
        )
        first = True
        for piece in stream:
            yield archive_pb2.RetrieveChunk(info=info if first else None, data=piece)
            first = False

    @streaming
    def GetFrames(  # noqa: N802
        self, request: archive_pb2.GetFramesRequest, context: grpc.ServicerContext
    ) -> Iterator[archive_pb2.FramePart]:
        for frame in self.archive.frames(
            request.sop_instance_uid,
            list(request.frame_numbers),
            request.decode,
            request.version,
        ):
            desc = frame.description
            pixel = common_pb2.PixelDescription(
                transfer_syntax_uid=frame.transfer_syntax_uid,
                dtype=frame.dtype,
                shape=list(frame.shape),
            )
            if desc is not None:
                pixel.rows, pixel.columns = desc.rows, desc.columns
                pixel.samples_per_pixel = desc.samples_per_pixel
                pixel.bits_allocated, pixel.bits_stored = (
                    desc.bits_allocated,
                    desc.bits_stored,
                )
                pixel.pixel_representation = desc.pixel_representation
                pixel.photometric_interpretation = desc.photometric_interpretation
                pixel.planar_configuration = desc.planar_configuration
            size = len(frame.data)
            view = memoryview(frame.data)
            for offset in range(0, max(size, 1), FRAME_PART_BYTES):
                yield archive_pb2.FramePart(
                    frame_number=frame.number,
                    pixel=pixel if offset == 0 else None,
                    offset=offset,
                    frame_size=size,
                    data=bytes(view[offset : offset + FRAME_PART_BYTES]),
                )

    @unary
    def Search(  # noqa: N802
        self, request: archive_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> archive_pb2.SearchResponse:
        level = _LEVELS.get(request.level)
        if level is None:
            raise InvalidInputError("level must be PATIENT, STUDY, SERIES or INSTANCE")
        page = self.archive.search(
            level,
            dict(request.match),
            list(request.include_fields),
            request.limit,
            request.offset,
            request.count_total,
            fuzzy=request.fuzzy,
            cursor=request.cursor,
        )
        return archive_pb2.SearchResponse(
            results=[
                archive_pb2.SearchResult(dicom_json=json.dumps(r)) for r in page.results
            ],
            total=page.total or 0,
            next_offset=page.next_offset,
            next_cursor=page.next_cursor,
        )

    WatchChanges = streaming(replication_api.watch_changes)


class QueryServicer(query_pb2_grpc.QueryServicer):  # type: ignore[misc]
    """Query service: read-only SQL."""

    def __init__(self, archive: Archive):
        self.archive = archive

    @streaming
    def Sql(  # noqa: N802
        self, request: query_pb2.SqlRequest, context: grpc.ServicerContext
    ) -> Iterator[query_pb2.SqlBatch]:
        from dicomvault.archive.sql import rows_to_json

        principal = current_principal()
        for batch in self.archive.sql_as(principal, request.sql, request.batch_rows):
            yield query_pb2.SqlBatch(
                columns=batch.columns,
                column_types=batch.column_types,
                rows_json=rows_to_json(batch.rows),
            )


class AdminServicer(DeidAdminMixin, admin_pb2_grpc.AdminServicer):  # type: ignore[misc]
    """Admin service: index rebuild and verify."""

    def __init__(self, archive: Archive):
        self.archive = archive

    @unary
    def RebuildIndex(  # noqa: N802
        self, request: admin_pb2.RebuildIndexRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RebuildIndexResponse:
        instances, studies, seconds = self.archive.rebuild_index()
        return admin_pb2.RebuildIndexResponse(
            instances=instances, studies=studies, seconds=seconds
        )

    @unary
    def Verify(  # noqa: N802
        self, request: admin_pb2.VerifyRequest, context: grpc.ServicerContext
    ) -> admin_pb2.VerifyResponse:
        report = self.archive.verify(request.repair)
        return admin_pb2.VerifyResponse(
            instances_checked=report.instances_checked,
            objects_checked=report.objects_checked,
            bytes_checked=report.bytes_checked,
            problems=[
                admin_pb2.VerifyProblem(
                    kind=p.kind,
                    tier=p.tier,
                    key=p.key,
                    detail=p.detail,
                    repaired=p.repaired,
                )
                for p in report.problems
            ],
        )

    ReplicationStatus = unary(replication_api.replication_status)


def build_server(
    archive: Archive, host: str, port: int, workers: int
) -> tuple[grpc.Server, int]:
    """A gRPC server with the archive services, health and reflection.

    Returns
    -------
    tuple
        The (not yet started) server and the bound port.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        interceptors=[SecurityInterceptor.for_server(archive, host)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    archive_pb2_grpc.add_ArchiveServicer_to_server(ArchiveServicer(archive), server)
    from dicomvault.archive.api.admin_tiers import TierAdminServicer
    from dicomvault.archive.api.analytics import AnalyticsServicer

    query_pb2_grpc.add_QueryServicer_to_server(AnalyticsServicer(archive), server)
    admin_pb2_grpc.add_AdminServicer_to_server(TierAdminServicer(archive), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [
        archive_pb2.DESCRIPTOR.services_by_name["Archive"].full_name,
        query_pb2.DESCRIPTOR.services_by_name["Query"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    ]
    for name in [*names, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        credentials = server_credentials(archive.settings)
        if credentials is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            bound = server.add_secure_port(f"{host}:{port}", credentials)
    except RuntimeError as err:  # grpcio raises RuntimeError("Failed to bind ...")
        raise OSError(f"cannot bind gRPC to {host}:{port}: {err}") from None
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    return server, bound
