"""The DICOMweb client and the checks on what a server answers.

A small real HTTP server on loopback plays a DICOMweb server that answers
with prepared bodies, so wrong and failing answers can be produced on demand.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dicomvault.tools.bench.dicomweb import (
    AS_STORED,
    DicomwebClient,
    DicomwebError,
    split_multipart,
)
from dicomvault.tools.bench.generator import BenchData
from dicomvault.tools.bench.measure import Plan, frames
from dicomvault.tools.bench.results import Results

BOUNDARY = "b0und4ry"


def multipart(*bodies: bytes) -> bytes:
    parts = [
        f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + body
        + b"\r\n"
        for body in bodies
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Canned(BaseHTTPRequestHandler):
    """Answers every request with the server's current (status, type, body)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, content_type, body = self.server.answer  # type: ignore[attr-defined]
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    server.answer = (200, "application/dicom+json", b"[]")  # type: ignore[attr-defined]
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_of(server: ThreadingHTTPServer) -> DicomwebClient:
    return DicomwebClient(f"http://127.0.0.1:{server.server_address[1]}/dicomweb")


class TestSplitMultipart:
    def test_parts_come_back_with_their_exact_bytes(self) -> None:
        """CRLF inside a part and empty parts survive the split."""
        bodies = [b"\x00\r\n\xff", b"", b"--not-a-boundary"]
        content_type = f'multipart/related; type="x"; boundary="{BOUNDARY}"'
        assert split_multipart(content_type, multipart(*bodies)) == bodies

    def test_answer_without_boundary_is_an_error(self) -> None:
        """A single-part answer where multipart was asked for is refused."""
        with pytest.raises(DicomwebError, match="answer is not multipart: "):
            split_multipart("application/octet-stream", b"data")

    def test_truncated_answer_is_an_error(self) -> None:
        """A body cut before its closing boundary is refused, not shortened."""
        body = multipart(b"frame")[:-12]
        with pytest.raises(DicomwebError, match="ends before its closing boundary"):
            split_multipart(f"multipart/related; boundary={BOUNDARY}", body)


class TestDicomwebClient:
    def test_server_error_names_the_request_and_status(
        self, canned: ThreadingHTTPServer
    ) -> None:
        """HTTP 500 on a frame request raises with the path and the status."""
        canned.answer = (500, "text/plain", b"boom")  # type: ignore[attr-defined]
        with pytest.raises(
            DicomwebError,
            match=r"GET /studies/1/series/2/instances/3/frames/4 answered HTTP 500, "
            r"expected 200: boom",
        ):
            client_of(canned).frames(("1", "2", "3"), [4], AS_STORED)

    def test_stow_with_failed_sop_sequence_is_an_error(
        self, canned: ThreadingHTTPServer, tiny: BenchData
    ) -> None:
        """A 200 answer that lists refused instances still fails the store."""
        refused = {"00081198": {"vr": "SQ", "Value": [{}]}}
        canned.answer = (  # type: ignore[attr-defined]
            200,
            "application/dicom+json",
            json.dumps(refused).encode(),
        )
        with pytest.raises(
            DicomwebError, match=r"STOW-RS refused 1 instance\(s\) of 1"
        ):
            client_of(canned).store([tiny.ct[0]])

    def test_wildcard_is_sent_unescaped(self, canned: ThreadingHTTPServer) -> None:
        """``*`` goes on the wire as is; a 204 answer is an empty match."""
        canned.answer = (204, "application/dicom+json", b"")  # type: ignore[attr-defined]
        assert client_of(canned).search("/studies", {"PatientName": "GA*"}) == []
        assert canned.paths == ["/dicomweb/studies?PatientName=GA*"]  # type: ignore[attr-defined]


class TestFrameChecks:
    def test_fast_wrong_frame_counts_as_a_failure_not_a_figure(
        self, canned: ThreadingHTTPServer, tiny: BenchData
    ) -> None:
        """A frame with one flipped byte records a failure and no latency."""
        good = tiny.mr.frame_bytes(1)
        wrong = bytes([good[0] ^ 1]) + good[1:]
        canned.answer = (  # type: ignore[attr-defined]
            200,
            f"multipart/related; boundary={BOUNDARY}",
            multipart(wrong),
        )
        results = Results()
        plan = Plan(random_frames=2, repeats=1, seed=1)
        frames(results, "peer", client_of(canned), tiny.mr, tiny.mr, AS_STORED, plan)
        assert results.failures == {
            "peer": {"wado.frames.mr.stored": "frame 1: wrong bytes returned"}
        }
        assert results.figures == {}

    def test_right_frames_give_latencies(
        self, canned: ThreadingHTTPServer, tiny: BenchData
    ) -> None:
        """When every answer is right, first/middle/last and p95 are recorded."""
        canned.answer = (  # type: ignore[attr-defined]
            200,
            f"multipart/related; boundary={BOUNDARY}",
            multipart(tiny.mr.frame_bytes(1)),
        )
        tiny_one = type(tiny.mr)(
            tiny.mr.path,
            "s",
            "st",
            "se",
            tiny.mr.transfer_syntax_uid,
            [tiny.mr.frames[0]],
        )
        results = Results()
        plan = Plan(random_frames=3, repeats=1, seed=1)
        frames(results, "peer", client_of(canned), tiny_one, tiny_one, AS_STORED, plan)
        assert results.failures == {}
        assert set(results.figures["peer"]) == {
            f"wado.frames.mr.stored.{k}"
            for k in ("first_ms", "middle_ms", "last_ms", "random.median_ms")
        } | {"wado.frames.mr.stored.random.p95_ms"}
