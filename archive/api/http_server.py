"""The DICOMweb HTTP server: uvicorn in a thread beside the gRPC server."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import uvicorn

from dicomvault.archive.api.dicomweb import build_app
from dicomvault.archive.auth import Authenticator

if TYPE_CHECKING:
    from dicomvault.archive.config import Settings
    from dicomvault.archive.service import Archive


class HttpServer:
    """DICOMweb on ``http.host``:``http.port``, run by uvicorn in a thread.

    Parameters
    ----------
    archive
        The open archive the routes call (shared with the gRPC server).
    settings
        Validated settings; the ``http.*`` keys are read.
    """

    def __init__(self, archive: Archive, settings: Settings):
        app = build_app(
            archive,
            settings.get("http.base_path"),
            settings.get("http.cors_origins"),
            settings.get("http.max_request_bytes"),
            Authenticator.from_settings(settings),
        )
        self.host = settings.get("http.host")
        config = uvicorn.Config(
            app,
            host=self.host,
            port=settings.get("http.port"),
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="dicomweb", daemon=True
        )
        self.port = 0

    def start(self, timeout: float = 30.0) -> str:
        """Start serving; returns ``host:port`` once the socket listens.

        Raises
        ------
        RuntimeError
            The server did not start (e.g. the port is taken).
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the DICOMweb server could not listen on {self.host}:"
                    f"{self._server.config.port}; is the port in use? "
                    "choose another with --http-port"
                )
            time.sleep(0.05)
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop accepting requests and wait for the ones in flight."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
