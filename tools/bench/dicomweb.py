"""The one DICOMweb client both peers are measured with (PS3.18).

Plain HTTP through one ``requests`` session per thread, so both servers see
exactly the same requests; multipart answers are split here.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

AS_STORED = "*"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


class DicomwebError(Exception):
    """A DICOMweb request failed or answered something malformed."""


def _short(text: str) -> str:
    """An error body on one line, cut to 200 characters."""
    return " ".join(text.split())[:200]


def split_multipart(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of the parts of a ``multipart/related`` answer (RFC 2046)."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise DicomwebError(
            f"answer is not multipart: Content-Type {content_type!r} has no boundary"
        )
    delimiter = b"--" + boundary.encode()
    parts: list[bytes] = []
    position = body.find(delimiter)
    if position < 0:
        raise DicomwebError(f"multipart answer has no boundary {boundary!r}")
    while True:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            return parts
        header_end = body.find(b"\r\n\r\n", position)
        following = body.find(b"\r\n" + delimiter, header_end)
        if header_end < 0 or following < 0:
            raise DicomwebError("multipart answer ends before its closing boundary")
        parts.append(body[header_end + 4 : following])
        position = following + 2


class DicomwebClient:
    """Requests to one server's DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.

    Parameters
    ----------
    base_url
        The service root without a trailing slash.
    """

    def __init__(self, base_url: str, timeout: float = 600.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        session: requests.Session = self._local.session
        return session

    def _get(self, path: str, accept: str, params: Any = None) -> requests.Response:
        reply = self.session.get(
            self.base_url + path,
            headers={"Accept": accept},
            params=params,
            timeout=self.timeout,
        )
        if reply.status_code != 200:
            raise DicomwebError(
                f"GET {path} answered HTTP {reply.status_code}, expected 200: "
                f"{_short(reply.text)}"
            )
        return reply

    def available(self) -> bool:
        """True when the root answers a QIDO-RS search with HTTP 200."""
        try:
            reply = self.session.get(
                self.base_url + "/studies", params={"limit": "1"}, timeout=5
            )
        except requests.RequestException:
            return False
        return reply.status_code in (200, 204)

    def store(self, paths: list[Path]) -> None:
        """STOW-RS ``paths`` in one request; raises unless every one is stored."""
        boundary = uuid.uuid4().hex
        chunks = []
        for path in paths:
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            )
            chunks.append(path.read_bytes())
            chunks.append(b"\r\n")
        chunks.append(f"--{boundary}--\r\n".encode())
        reply = self.session.post(
            self.base_url + "/studies",
            data=b"".join(chunks),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; '
                f"boundary={boundary}",
                "Accept": "application/dicom+json",
            },
            timeout=self.timeout,
        )
        if reply.status_code != 200:
            raise DicomwebError(
                f"STOW-RS of {len(paths)} instance(s) answered HTTP "
                f"{reply.status_code}, expected 200: {_short(reply.text)}"
            )
        answer = reply.json() if reply.content else {}
        refused = answer.get("00081198", {}).get("Value", [])
        if refused:
            raise DicomwebError(
                f"STOW-RS refused {len(refused)} instance(s) of {len(paths)}"
            )

    def search(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """QIDO-RS: the matches as DICOM JSON (an empty answer is no match)."""
        # "*" is a legal query character (RFC 3986 sub-delims) and is sent as
        # is: Orthanc 1.10's DICOMweb plugin matches nothing for "%2A".
        query = urlencode(params, safe="*")
        reply = self.session.get(
            self.base_url + path + (f"?{query}" if query else ""),
            headers={"Accept": "application/dicom+json"},
            timeout=self.timeout,
        )
        if reply.status_code == 204:
            return []
        if reply.status_code != 200:
            raise DicomwebError(
                f"QIDO-RS {path} {params} answered HTTP {reply.status_code}"
            )
        result: list[dict[str, Any]] = reply.json()
        return result

    def frames(
        self, uids: tuple[str, str, str], numbers: list[int], syntax: str
    ) -> list[bytes]:
        """WADO-RS frames in ``syntax`` (``AS_STORED`` for no transcoding)."""
        study, series, sop = uids
        path = f"/studies/{study}/series/{series}/instances/{sop}/frames/" + ",".join(
            str(n) for n in numbers
        )
        accept = (
            'multipart/related; type="application/octet-stream"; '
            f"transfer-syntax={syntax}"
        )
        reply = self._get(path, accept)
        return split_multipart(reply.headers.get("Content-Type", ""), reply.content)

    def instance(self, uids: tuple[str, str, str]) -> bytes:
        """WADO-RS one whole instance as stored."""
        study, series, sop = uids
        path = f"/studies/{study}/series/{series}/instances/{sop}"
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        reply = self._get(path, accept)
        parts = split_multipart(reply.headers.get("Content-Type", ""), reply.content)
        if len(parts) != 1:
            raise DicomwebError(f"instance {sop}: {len(parts)} parts, expected 1")
        return parts[0]

    def metadata(self, path: str) -> list[dict[str, Any]]:
        """WADO-RS metadata of a study, series or instance path."""
        reply = self._get(path + "/metadata", "application/dicom+json")
        result: list[dict[str, Any]] = reply.json()
        return result
