"""A bare grpcio server that streams the frames of one file: the transport's
own ceiling, measured in the same run as dicomvault's GetFrames.

It sends raw bytes (no protobuf), one message per frame, from memory, so it
costs only what gRPC itself costs. Run as
``python -m dicomvault.tools.bench.echo PORT FILE OFFSET FRAME_BYTES COUNT``.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc

SERVICE = "dicomvault.bench.Echo"
METHOD = f"/{SERVICE}/Frames"
MAX_MESSAGE_BYTES = 64 << 20


def serve(port: int, path: str, offset: int, frame_bytes: int, count: int) -> None:
    """Serve ``count`` frames of ``frame_bytes`` read from ``path`` at ``offset``."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        frames = [fh.read(frame_bytes) for _ in range(count)]

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from frames

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Frames": grpc.unary_stream_rpc_method_handler(stream)}
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.stop(grace=1).wait()


def fetch(channel: grpc.Channel) -> list[bytes]:
    """Every frame the echo server streams."""
    call = channel.unary_stream(METHOD)
    return list(call(b""))


if __name__ == "__main__":
    port, path, offset, frame_bytes, count = sys.argv[1:6]
    serve(int(port), path, int(offset), int(frame_bytes), int(count))
