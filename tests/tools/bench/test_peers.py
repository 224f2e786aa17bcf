"""Starting the servers under test, and watching their memory and CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dicomvault.tools.bench.peers import (
    DicomvaultPeer,
    OrthancPeer,
    PeerUnavailable,
    ResourceMonitor,
    disk_bytes,
    in_private_netns,
    serve_has_http_port,
)
from dicomvault.tools.client import Client


class TestResourceMonitor:
    def test_peak_memory_and_cpu_of_a_child_process_are_seen(self) -> None:
        """A child that holds 200 MB and spins is measured through its parent."""
        script = (
            "import subprocess, sys; subprocess.run([sys.executable, '-c', "
            '\'b = bytearray(200 << 20); b[::4096] = b"x" * len(b[::4096]); '
            "import time; t = time.process_time()\\n"
            "while time.process_time() - t < 0.5: pass'])"
        )
        proc = subprocess.Popen([sys.executable, "-c", script])
        monitor = ResourceMonitor(proc.pid, interval=0.05)
        proc.wait()
        usage = monitor.stop()
        assert usage.peak_rss_bytes > 200 << 20
        assert usage.cpu_seconds > 0.2


class TestPeers:
    def test_disk_bytes_counts_allocated_blocks(self, tmp_path: Path) -> None:
        """A 1 MiB file counts at least 1 MiB; an empty folder counts none."""
        assert disk_bytes(tmp_path) == 0
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "f").write_bytes(b"\x01" * (1 << 20))
        assert disk_bytes(tmp_path) >= 1 << 20

    @pytest.mark.skipif(in_private_netns(), reason="needs the host namespace")
    def test_orthanc_refuses_to_start_outside_a_private_namespace(
        self, tmp_path: Path
    ) -> None:
        """Orthanc binds every interface, so it never starts in the host's."""
        with pytest.raises(PeerUnavailable, match="Orthanc skipped: "):
            OrthancPeer(tmp_path).start()

    def test_dicomvault_serves_grpc_and_dicomweb_only_when_built_with_it(
        self, tmp_path: Path
    ) -> None:
        """The gRPC address answers; a DICOMweb root exists iff serve has it."""
        peer = DicomvaultPeer(tmp_path).start()
        try:
            assert peer.grpc_address is not None
            client = Client(peer.grpc_address)
            assert client.search(1, {}) == []
            client.close()
            assert (peer.dicomweb_url is not None) == serve_has_http_port()
        finally:
            usage = peer.stop()
        assert peer.proc is not None and peer.proc.returncode == 0
        assert usage.peak_rss_bytes > 0
