"""Run the dicomvault server until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from dicomvault.archive import logkeys as lk
from dicomvault.archive.api.grpc_server import build_server
from dicomvault.archive.api.http_server import HttpServer
from dicomvault.archive.config import Settings
from dicomvault.archive.scheduler import LifecycleScheduler
from dicomvault.archive.service import Archive

logger = logging.getLogger(__name__)


def run_server(
    settings: Settings, on_ready: Callable[[str], Any] | None = None
) -> None:
    """Open the archive, serve gRPC and DICOMweb, stop cleanly on SIGTERM or SIGINT.

    Parameters
    ----------
    settings
        Validated settings.
    on_ready
        Called with the gRPC address once the server accepts calls.
    """
    archive = Archive.open(settings)
    host = settings.get("server.grpc_host")
    try:
        server, port = build_server(
            archive,
            host,
            settings.get("server.grpc_port"),
            settings.get("server.workers"),
        )
    except BaseException:
        archive.close()
        raise
    # DICOMweb listens before gRPC starts: a client that sees the gRPC health
    # check answer SERVING can use both front doors at once.
    http = HttpServer(archive, settings)
    try:
        http_address = http.start()
    except BaseException:
        server.stop(grace=0).wait()
        archive.close()
        raise
    archive.start_replication()
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    previous = {
        sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    server.start()
    scheduler = LifecycleScheduler.start_for(archive)
    address = f"{host}:{port}"
    lk.log_event(
        logger,
        lk.SERVER_STARTED,
        **{
            lk.ADDRESS: address,
            "grpc": address,
            "http": http_address + settings.get("http.base_path"),
            **archive.describe(),
        },
    )
    try:
        if on_ready is not None:
            on_ready(address)
        while not stop.wait(0.5):
            pass
    finally:
        http.stop()
        scheduler.stop()
        server.stop(grace=5).wait()
        archive.stop_replication()
        archive.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lk.log_event(logger, lk.SERVER_STOPPED, **{lk.ADDRESS: address})
