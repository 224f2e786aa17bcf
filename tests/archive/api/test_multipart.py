"""The streaming multipart/related reader and writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dicomvault.archive.api import multipart as mp
from dicomvault.archive.errors import InvalidInputError


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _parse(body: bytes, boundary: str, size: int) -> list[tuple[dict[str, str], bytes]]:
    async def run() -> list[tuple[dict[str, str], bytes]]:
        parts: list[tuple[dict[str, str], bytes]] = []
        reader = mp.MultipartReader(boundary)
        async for event in reader.events(_chunks(body, size)):
            if isinstance(event, mp.PartStart):
                parts.append((event.headers, b""))
            elif isinstance(event, mp.PartData):
                parts[-1] = (parts[-1][0], parts[-1][1] + event.data)
        return parts

    return asyncio.run(run())


class TestMultipartReader:
    @pytest.mark.parametrize("size", [1, 3, 7, 64, 1 << 20])
    def test_written_parts_read_back_identical_at_any_chunk_size(
        self, size: int
    ) -> None:
        """What write_parts produces parses back to the same parts and bytes."""
        payloads = [b"", b"\r\n--almost", bytes(range(256)) * 5, b"--b--\r\n"]
        boundary = mp.new_boundary()
        body = b"".join(
            mp.write_parts(boundary, [("application/dicom", [p]) for p in payloads])
        )
        parts = _parse(body, boundary, size)
        assert [data for _headers, data in parts] == payloads
        assert all(h == {"content-type": "application/dicom"} for h, _ in parts)

    def test_truncated_body_is_rejected_naming_the_closing_boundary(self) -> None:
        """A body that stops before its closing boundary is an error."""
        body = b"--XX\r\nContent-Type: application/dicom\r\n\r\nabc"
        with pytest.raises(
            InvalidInputError,
            match=r"^multipart body ended before its closing boundary \(--XX--\); "
            "the request was truncated$",
        ):
            _parse(body, "XX", 4)

    def test_missing_boundary_parameter_is_rejected(self) -> None:
        """A multipart Content-Type without a boundary cannot be parsed."""
        with pytest.raises(
            InvalidInputError,
            match="^Content-Type multipart/related has no boundary parameter$",
        ):
            mp.MultipartReader("")

    def test_media_type_parameters_are_parsed_without_quotes(self) -> None:
        """Parameters are lower-cased names with unquoted values."""
        parsed = mp.parse_media_type(
            'multipart/related; Type="application/dicom"; boundary=abc'
        )
        assert parsed == mp.MediaType(
            "multipart/related", {"type": "application/dicom", "boundary": "abc"}
        )
