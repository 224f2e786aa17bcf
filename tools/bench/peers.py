"""The servers under test: started with their own temporary storage, watched
for memory and CPU, and stopped by process id.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from dicomvault.tools.bench.dicomweb import DicomwebClient

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_INSTALL_HINT = (
    "install both from Debian with `apt-get install orthanc orthanc-dicomweb`"
)


class PeerUnavailable(Exception):
    """A peer cannot run here; the message says why and how to fix it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_private_netns() -> bool:
    """True when the only network interface here is loopback."""
    # Asked of the kernel: /sys/class/net still shows the parent namespace.
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def reexec_in_netns(argv: list[str]) -> int:
    """Run ``python -m dicomvault.tools.bench argv`` in a new network namespace.

    The namespace holds only a loopback interface, which is brought up
    before the benchmark starts; no server started inside can be reached
    from, or reach, anything beyond this machine.
    """
    script = 'ip link set lo up && exec "$@"'
    command = [
        "unshare",
        "--net",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        sys.executable,
        "-m",
        "dicomvault.tools.bench",
        *argv,
    ]
    return int(subprocess.call(command))


@dataclass(slots=True)
class Usage:
    """Peak resident memory and CPU seconds of a process tree."""

    peak_rss_bytes: int = 0
    cpu_seconds: float = 0.0


class ResourceMonitor:
    """Samples the resident memory of a process and its children.

    CPU seconds are read from the tree at each sample, so time spent by
    children that exit between samples is partly missed; the servers here
    keep their workers alive.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.usage = Usage()
        self._cpu_at_start = self._cpu()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.process, *self.process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _cpu(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def sample(self) -> None:
        rss = 0
        for proc in self._tree():
            try:
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        self.usage.peak_rss_bytes = max(self.usage.peak_rss_bytes, rss)
        cpu = self._cpu()
        if cpu:
            self.usage.cpu_seconds = max(
                self.usage.cpu_seconds, cpu - self._cpu_at_start
            )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> Usage:
        self.sample()
        self._stop.set()
        self._thread.join()
        return self.usage


def disk_bytes(folder: Path) -> int:
    """Bytes allocated on disk by the files under ``folder``."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_blocks * 512
    return total


class Peer:
    """A server process with a storage folder and a resource monitor."""

    name = "peer"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.proc: subprocess.Popen[bytes] | None = None
        self.monitor: ResourceMonitor | None = None
        self.log_path = workdir / "server.log"
        self.dicomweb_url: str | None = None
        self.grpc_address: str | None = None

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
        )

    def _wait_http(self, url: str, timeout: float) -> bool:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                requests.get(url, timeout=1)
                return True
            except requests.RequestException:
                time.sleep(0.2)
        return False

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> Usage:
        """SIGTERM the server by its process id, wait, and return its usage."""
        usage = self.monitor.stop() if self.monitor else Usage()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return usage

    def stored_bytes(self) -> int:
        return disk_bytes(self.storage)


class OrthancPeer(Peer):
    """Orthanc with its DICOMweb plugin, HTTP only, in a temporary folder."""

    name = "orthanc"

    def start(self) -> OrthancPeer:
        """Write a config, start Orthanc, wait for its HTTP port.

        Raises
        ------
        PeerUnavailable
            Orthanc or its plugin is not installed, or it did not start.
        """
        if not ORTHANC_BINARY.exists() or not ORTHANC_PLUGIN.exists():
            raise PeerUnavailable(
                f"Orthanc skipped: {ORTHANC_BINARY} or {ORTHANC_PLUGIN} is "
                f"missing; {ORTHANC_INSTALL_HINT}"
            )
        if not in_private_netns():
            raise PeerUnavailable(
                "Orthanc skipped: it binds every interface, so it runs only "
                "in a private network namespace; run the benchmark as root "
                "without --no-netns"
            )
        self.storage.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "HttpPort": port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpServerEnabled": True,
            "Plugins": [str(ORTHANC_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StorageCompression": False,
            "ConcurrentJobs": 2,
            "HttpTimeout": 600,
        }
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        self._spawn([str(ORTHANC_BINARY), str(config_path)])
        if not self._wait_http(f"http://127.0.0.1:{port}/system", 60):
            self.stop()
            raise PeerUnavailable(
                f"Orthanc did not answer on port {port}; its log:\n{self.log_tail()}"
            )
        assert self.proc is not None
        self.monitor = ResourceMonitor(self.proc.pid)
        self.dicomweb_url = f"http://127.0.0.1:{port}/dicom-web"
        return self


def serve_has_http_port() -> bool:
    """True when this build's ``dicomvault serve`` has a DICOMweb front door."""
    usage = subprocess.run(
        [sys.executable, "-m", "dicomvault.tools.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "--http-port" in usage


class DicomvaultPeer(Peer):
    """``dicomvault serve`` with gRPC and, when this build has it, DICOMweb."""

    name = "dicomvault"

    def start(self) -> DicomvaultPeer:
        """Start the server; ``dicomweb_url`` stays None without an HTTP endpoint."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self.storage.mkdir(parents=True, exist_ok=True)
        grpc_port, http_port = free_port(), free_port()
        base = [
            sys.executable,
            "-m",
            "dicomvault.tools.cli",
            "serve",
            "--data",
            str(self.storage),
            "--grpc-port",
            str(grpc_port),
        ]
        env = {**os.environ, "DICOMVAULT_SERVER__GRPC_HOST": "127.0.0.1"}
        if serve_has_http_port():
            base += ["--http-port", str(http_port)]
        else:
            http_port = 0
        self._spawn(base, env)
        assert self.proc is not None
        self.grpc_address = f"127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise PeerUnavailable(
                        f"dicomvault did not start; its log:\n{self.log_tail()}"
                    )
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    time.sleep(0.1)
        url = f"http://127.0.0.1:{http_port}/dicomweb"
        if http_port and self._wait_http(url, 10) and DicomwebClient(url).available():
            self.dicomweb_url = url
        self.monitor = ResourceMonitor(self.proc.pid)
        return self


def remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
