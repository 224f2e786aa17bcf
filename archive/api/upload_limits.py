"""The per-stream byte limit of the Store RPC (``ingest.max_upload_bytes``)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from dicomvault.archive.input_limits import upload_too_large
from dicomvault.proto import archive_pb2


def cap_store_stream(
    messages: Iterator[archive_pb2.StoreRequest],
    context: grpc.ServicerContext,
    limit: int,
) -> Iterator[archive_pb2.StoreRequest]:
    """Pass Store messages through until their chunks exceed ``limit`` bytes.

    Past the limit the call ends with RESOURCE_EXHAUSTED; the servicer's own
    cleanup discards the instance being spooled, so nothing partial is stored.
    """
    received = 0
    for message in messages:
        if message.WhichOneof("part") == "chunk":
            received += len(message.chunk)
            if received > limit:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    str(upload_too_large(received, limit)),
                )
        yield message
