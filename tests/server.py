"""A real dicomvault server in a subprocess, for tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dicomvault.tools.client import Client

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


def corpus_dir() -> Path:
    """The shared DICOM corpus (``../shared/corpus`` from the checkout)."""
    env = os.environ.get("DICOMVAULT_TEST_CORPUS")
    return Path(env) if env else CORPUS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``dicomvault serve`` on a free port with its own data folder.

    Parameters
    ----------
    data_dir
        The data folder (kept between restarts of the same object).
    config
        Optional TOML file.
    env
        Extra environment variables (``DICOMVAULT_*`` settings).
    credentials
        TLS credentials for the readiness check of a server with TLS.
    """

    def __init__(
        self,
        data_dir: Path,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ):
        self.data_dir = data_dir
        self.credentials = credentials
        self.config = config
        self.env = env or {}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.http_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}/dicomweb"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start and wait until the health service answers SERVING."""
        args = [
            sys.executable,
            "-m",
            "dicomvault.tools.cli",
            "serve",
            "--data",
            str(self.data_dir),
            "--grpc-port",
            str(self.port),
            "--http-port",
            str(self.http_port),
        ]
        if self.config is not None:
            args += ["--config", str(self.config)]
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout
        channel = (
            grpc.insecure_channel(self.address)
            if self.credentials is None
            else grpc.secure_channel(self.address, self.credentials)
        )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited early; see {self.log_path}:\n"
                        + self.log_path.read_text()[-3000:]
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return self
                except grpc.RpcError:
                    time.sleep(0.1)
        raise RuntimeError(f"server did not become ready in {timeout} s")

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def client(self) -> Client:
        return Client(self.address)

    def rss_bytes(self) -> int:
        """Resident memory of the server process now."""
        import psutil

        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
