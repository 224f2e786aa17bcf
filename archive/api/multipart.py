"""multipart/related (RFC 2387) as DICOMweb uses it: read streaming, write.

:class:`MultipartReader` turns a request body, arriving in chunks of any
size, into a sequence of events: a part starts (with its headers), a piece
of its body, the part ends. It holds at most one chunk plus the length of
the boundary, so a request of any size is parsed in bounded memory.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

from dicomvault.archive.errors import InvalidInputError

MAX_HEADER_BYTES = 16 << 10


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type: ``type/subtype`` and its lower-cased parameters."""

    value: str
    params: dict[str, str] = field(default_factory=dict)


def parse_media_type(text: str) -> MediaType:
    """Parse ``type/subtype; name=value; ...`` (quotes around values removed)."""
    head, *rest = text.split(";")
    params = {}
    for item in rest:
        name, sep, value = item.partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"')
    return MediaType(head.strip().lower(), params)


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part begins; ``headers`` have lower-cased names."""

    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class PartData:
    """A piece of the current part's body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part is complete."""


Event = PartStart | PartData | PartEnd


class MultipartReader:
    """Parse a multipart body as it streams in.

    Parameters
    ----------
    boundary
        The ``boundary`` parameter of the request's Content-Type.

    Raises
    ------
    InvalidInputError
        From :meth:`events`, when the body is not well-formed multipart.
    """

    def __init__(self, boundary: str):
        if not boundary:
            raise InvalidInputError(
                "Content-Type multipart/related has no boundary parameter"
            )
        self._first = b"--" + boundary.encode()
        self._delimiter = b"\r\n--" + boundary.encode()

    async def events(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
        """Yield the events of the body ``chunks``, in order."""
        buf = b""
        state = "preamble"
        async for chunk in chunks:
            buf += chunk
            while True:
                if state == "preamble":
                    at = buf.find(self._first)
                    if at < 0:
                        buf = buf[-len(self._first) :]
                        break
                    buf = buf[at + len(self._first) :]
                    state = "after-delimiter"
                if state == "after-delimiter":
                    if len(buf) < 2:
                        break
                    if buf.startswith(b"--"):
                        return
                    if not buf.startswith(b"\r\n"):
                        raise InvalidInputError(
                            "multipart body: a boundary is not followed by CRLF"
                        )
                    buf = buf[2:]
                    state = "headers"
                if state == "headers":
                    end = buf.find(b"\r\n\r\n")
                    if buf.startswith(b"\r\n"):
                        end, skip = 0, 2
                    else:
                        skip = 4
                    if end < 0:
                        if len(buf) > MAX_HEADER_BYTES:
                            raise InvalidInputError(
                                "multipart body: part headers are longer than "
                                f"{MAX_HEADER_BYTES} bytes"
                            )
                        break
                    yield PartStart(_headers(buf[:end]))
                    buf = buf[end + skip :]
                    state = "body"
                if state == "body":
                    at = buf.find(self._delimiter)
                    if at < 0:
                        keep = len(self._delimiter) - 1
                        if len(buf) > keep:
                            yield PartData(buf[:-keep])
                            buf = buf[-keep:]
                        break
                    if at:
                        yield PartData(buf[:at])
                    yield PartEnd()
                    buf = buf[at + len(self._delimiter) :]
                    state = "after-delimiter"
        raise InvalidInputError(
            "multipart body ended before its closing boundary "
            f"({self._first.decode()}--); the request was truncated"
        )


def _headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def new_boundary() -> str:
    """A boundary that cannot occur in the parts (a random UUID)."""
    return uuid.uuid4().hex


def content_type(boundary: str, part_type: str) -> str:
    """The Content-Type header of a multipart/related reply."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def write_parts(
    boundary: str, parts: Iterable[tuple[str, Iterable[bytes]]]
) -> Iterator[bytes]:
    """Yield a multipart body from (Content-Type, body pieces) pairs."""
    for part_type, pieces in parts:
        yield f"\r\n--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
        yield from pieces
    yield f"\r\n--{boundary}--\r\n".encode()
