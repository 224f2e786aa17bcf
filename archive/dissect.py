"""Take an uploaded DICOM file apart into header, frames and literal bytes.

The archive keeps each frame in a Zarr array and everything else (preamble,
file meta, the data set around the pixel data, item headers of encapsulated
pixel data, padding, trailing elements) as literal bytes. A *segment list*
says how to put the original file back together byte for byte:
``("L", start, end)`` copies bytes ``start:end`` of the original file (they
are kept in the envelope object) and ``("F", frame, start, length)`` copies
bytes of one stored frame.

Dissection reads the header with pydicom and walks the pixel data with its
own small parser, so a multi-gigabyte instance is never read into memory.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomvault.archive.errors import (
    DicomVaultError,
    MalformedDicomError,
    NotDicomError,
)
from dicomvault.archive.uids import MISSING, check_uid, clean_uid

logger = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
PIXEL_TAGS = {
    0x7FE00010: "PixelData",
    0x7FE00008: "FloatPixelData",
    0x7FE00009: "DoubleFloatPixelData",
}
_ITEM = 0xFFFEE000
_SEQ_DELIM = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# Trailing elements after the pixel data are parsed for the metadata index
# only when small; their bytes are always kept.
_MAX_TRAILER_PARSE = 16 << 20
# Markers that open the first fragment of a frame, used when neither a basic
# nor an extended offset table says where frames start (PS3.5 A.4).
_FRAME_MARKERS = (
    b"\xff\xd8\xff",  # JPEG, JPEG-LS SOI
    b"\xff\x4f\xff\x51",  # JPEG 2000 / HTJ2K codestream SOC+SIZ
    b"\x00\x00\x00\x0cjP  ",  # JP2 file signature box
)

Kind = Literal["native", "encapsulated", "whole"]
Segment = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class PixelInfo:
    """The attributes needed to interpret pixel data."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int
    pixel_keyword: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PixelInfo:
        return cls(**data)


@dataclass(slots=True)
class FramePlan:
    """Where each frame's bytes are in the original file.

    For native pixel data every frame is ``frame_nbytes`` long and frame ``i``
    starts at ``value_offset + i * frame_nbytes``. For encapsulated pixel data
    ``frames[i]`` lists the ``(offset, length)`` of the fragments whose
    concatenation is frame ``i``.
    """

    kind: Kind
    count: int = 0
    frame_nbytes: int = 0
    value_offset: int = 0
    swap: int = 0
    frames: list[list[tuple[int, int]]] = field(default_factory=list)
    why_whole: str = ""


@dataclass(slots=True)
class Dissection:
    """An uploaded file taken apart; see the module docstring."""

    dataset: Dataset
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    transfer_syntax_inferred: bool
    pixel: PixelInfo | None
    plan: FramePlan
    segments: list[Segment]
    size: int


def _looks_like_dicom(head: bytes) -> bool:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # No preamble: the file must open with a group 0002 or 0008 element, in
    # either byte order (ACR-NEMA style files start straight at group 0008).
    group_le = struct.unpack("<H", head[:2])[0]
    group_be = struct.unpack(">H", head[:2])[0]
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _transfer_syntax(ds: Dataset) -> tuple[str, bool]:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return clean_uid(ts), False
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian, True
    return (ExplicitVRLittleEndian if little else ExplicitVRBigEndian), True


def _uid(ds: Dataset, keyword: str, meta_keyword: str | None = None) -> str:
    value = ds.get(keyword)
    if not value and meta_keyword is not None:
        meta = getattr(ds, "file_meta", None)
        value = meta.get(meta_keyword) if meta is not None else None
    return clean_uid(value) if value else ""


def _int(ds: Dataset, keyword: str, default: int) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MalformedDicomError(f"{keyword} {value!r} is not a number") from None


def _pixel_info(ds: Dataset, keyword: str) -> PixelInfo:
    missing = [
        k for k in ("Rows", "Columns", "BitsAllocated") if ds.get(k) in (None, "")
    ]
    if missing:
        raise MalformedDicomError(
            f"pixel data present but {', '.join(missing)} missing; the frames "
            "cannot be located without them"
        )
    bits_allocated = _int(ds, "BitsAllocated", 0)
    info = PixelInfo(
        rows=_int(ds, "Rows", 0),
        columns=_int(ds, "Columns", 0),
        samples_per_pixel=_int(ds, "SamplesPerPixel", 1),
        bits_allocated=bits_allocated,
        bits_stored=_int(ds, "BitsStored", bits_allocated),
        high_bit=_int(ds, "HighBit", _int(ds, "BitsStored", bits_allocated) - 1),
        pixel_representation=_int(ds, "PixelRepresentation", 0),
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "") or ""),
        planar_configuration=_int(ds, "PlanarConfiguration", 0),
        number_of_frames=max(1, _int(ds, "NumberOfFrames", 1)),
        pixel_keyword=keyword,
    )
    if info.rows <= 0 or info.columns <= 0 or info.samples_per_pixel <= 0:
        raise MalformedDicomError(
            f"Rows {info.rows}, Columns {info.columns} and SamplesPerPixel "
            f"{info.samples_per_pixel} must all be positive"
        )
    if info.bits_allocated not in (1, 8, 16, 32, 64):
        raise MalformedDicomError(
            f"BitsAllocated {info.bits_allocated} is not 1, 8, 16, 32 or 64"
        )
    return info


def native_frame_nbytes(info: PixelInfo) -> int:
    """Bytes of one native frame (0 when frames are not byte aligned)."""
    if info.bits_allocated == 1:
        return 0
    samples = info.samples_per_pixel
    if info.photometric_interpretation == "YBR_FULL_422" and samples == 3:
        # Two luminance samples share one pair of chrominance samples
        # (PS3.3 C.7.6.3.1.2), so a pixel takes two samples, not three.
        samples = 2
    return info.rows * info.columns * samples * info.bits_allocated // 8


def _read_exact(fh: BinaryIO, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise MalformedDicomError(f"file ends inside {what} (truncated upload?)")
    return data


def _element_header(
    fh: BinaryIO, implicit: bool, little: bool
) -> tuple[int, str, int, int]:
    """Read a data element header; return (tag, vr, length, header size)."""
    order = "<" if little else ">"
    group, elem = struct.unpack(order + "HH", _read_exact(fh, 4, "pixel data header"))
    tag = (group << 16) | elem
    if implicit:
        (length,) = struct.unpack(order + "L", _read_exact(fh, 4, "pixel data header"))
        return tag, "", length, 8
    vr = _read_exact(fh, 2, "pixel data header").decode("ascii", "replace")
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ", "UT", "UC", "UR"):
        _read_exact(fh, 2, "pixel data header")
        (length,) = struct.unpack(order + "L", _read_exact(fh, 4, "pixel data header"))
        return tag, vr, length, 12
    (length,) = struct.unpack(order + "H", _read_exact(fh, 2, "pixel data header"))
    return tag, vr, length, 8


def _fragments(
    fh: BinaryIO, start: int, size: int
) -> tuple[bytes, list[tuple[int, int]], int]:
    """Walk encapsulated pixel data items (PS3.5 A.4) from ``start``.

    Returns the basic offset table bytes, the (offset, length) of each
    fragment's data, and the file offset just past the sequence delimiter.
    """
    fh.seek(start)
    pos = start
    bot: bytes | None = None
    fragments: list[tuple[int, int]] = []
    while True:
        header = fh.read(8)
        if len(header) < 8:
            raise MalformedDicomError(
                "encapsulated pixel data ends without a sequence delimiter "
                "(truncated upload?)"
            )
        group, elem, length = struct.unpack("<HHL", header)
        tag = (group << 16) | elem
        if tag == _SEQ_DELIM:
            return bot or b"", fragments, pos + 8
        if tag != _ITEM:
            raise MalformedDicomError(
                f"encapsulated pixel data holds tag ({group:04X},{elem:04X}) at "
                f"byte {pos}; only items and a sequence delimiter may appear"
            )
        if length == _UNDEFINED or pos + 8 + length > size:
            raise MalformedDicomError(
                f"pixel data item at byte {pos} claims {length} bytes but the "
                f"file has {size - pos - 8} left (truncated upload?)"
            )
        if bot is None:
            bot = fh.read(length)
        else:
            fragments.append((pos + 8, length))
            fh.seek(length, 1)
        pos += 8 + length


def _split_frames(
    fh: BinaryIO,
    fragments: list[tuple[int, int]],
    bot: bytes,
    count: int,
    extended: list[int] | None,
) -> list[list[tuple[int, int]]] | str:
    """Group fragments into frames, or say why it cannot be done."""
    if not fragments:
        return "encapsulated pixel data has no fragments"
    if count == 1:
        return [fragments]
    first_item = fragments[0][0] - 8

    def by_offsets(offsets: list[int]) -> list[list[tuple[int, int]]] | None:
        # Offset tables count from the first item tag after the basic offset
        # table (PS3.5 A.4 and PS3.3 C.7.6.3.1.8).
        starts = {off - 8 - first_item: i for i, (off, _len) in enumerate(fragments)}
        index = [starts.get(off) for off in offsets]
        if len(offsets) != count or None in index or index[0] != 0:
            return None
        bounds = [i for i in index if i is not None] + [len(fragments)]
        if sorted(set(bounds)) != bounds:
            return None
        return [fragments[bounds[k] : bounds[k + 1]] for k in range(count)]

    if extended:
        split = by_offsets(extended)
        if split is not None:
            return split
    if len(bot) >= 4 and len(bot) % 4 == 0:
        split = by_offsets(list(struct.unpack(f"<{len(bot) // 4}L", bot)))
        if split is not None:
            return split
    if len(fragments) == count:
        return [[frag] for frag in fragments]
    starts = []
    for i, (offset, _length) in enumerate(fragments):
        fh.seek(offset)
        if fh.read(8).startswith(_FRAME_MARKERS):
            starts.append(i)
    if len(starts) == count and starts[0] == 0:
        bounds = starts + [len(fragments)]
        return [fragments[bounds[k] : bounds[k + 1]] for k in range(count)]
    return (
        f"{len(fragments)} fragments for {count} frames, and neither an offset "
        "table nor frame markers say where each frame starts"
    )


def _extended_offsets(ds: Dataset) -> list[int] | None:
    raw = ds.get("ExtendedOffsetTable")
    if not raw:
        return None
    data = bytes(raw)
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def _read_trailer(
    fh: BinaryIO, start: int, size: int, implicit: bool, little: bool
) -> Dataset | None:
    if start >= size or size - start > _MAX_TRAILER_PARSE:
        return None
    fh.seek(start)
    try:
        return read_dataset(BytesIO(fh.read(size - start)), implicit, little)
    except Exception:  # noqa: BLE001 - the bytes are kept whatever pydicom thinks
        logger.debug("trailing elements after pixel data not parsed for metadata")
        return None


def dissect(path: Path) -> Dissection:
    """Take the DICOM file at ``path`` apart; nothing is written.

    Raises
    ------
    NotDicomError
        The bytes are not DICOM.
    MalformedDicomError
        DICOM that is truncated, inconsistent or not a storable instance.
    UnsafeUIDError
        A UID holds characters that are not allowed.
    """
    size = path.stat().st_size
    if size == 0:
        raise NotDicomError("empty upload: 0 bytes received")
    with open(path, "rb") as fh:
        if not _looks_like_dicom(fh.read(132)):
            raise NotDicomError(
                "not a DICOM file: no 'DICM' marker at byte 128 and the data does "
                "not start with a DICOM element"
            )
        fh.seek(0)
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        except (InvalidDicomError, EOFError) as err:
            raise MalformedDicomError(f"cannot parse the DICOM header: {err}") from None
        except Exception as err:  # noqa: BLE001 - pydicom raises many kinds on bad bytes
            raise MalformedDicomError(
                f"cannot parse the DICOM header: {type(err).__name__}: {err}"
            ) from None
        header_end = fh.tell()
        try:
            return _plan(fh, ds, header_end, size)
        except DicomVaultError:
            raise
        except Exception as err:  # noqa: BLE001 - values are converted lazily
            # pydicom parses a value only when it is first read, so a corrupt
            # element (unknown VR, odd length) surfaces here, not in dcmread.
            raise MalformedDicomError(
                "cannot read an element of the DICOM header: "
                f"{type(err).__name__}: {err}"
            ) from None


def _identify(ds: Dataset) -> tuple[str, str, str, str]:
    sop = _uid(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID")
    sop_class = _uid(ds, "SOPClassUID", "MediaStorageSOPClassUID")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        raise MalformedDicomError(
            "a DICOMDIR (Media Storage Directory) is an index of a file set, not "
            "an instance; store the files it lists instead"
        )
    if not sop:
        raise MalformedDicomError(
            "no SOP Instance UID (0008,0018), neither in the data set nor as "
            "Media Storage SOP Instance UID in the file meta; an instance "
            "cannot be stored without one"
        )
    check_uid(sop, "SOPInstanceUID")
    if sop_class:
        check_uid(sop_class, "SOPClassUID")
    study = _uid(ds, "StudyInstanceUID")
    series = _uid(ds, "SeriesInstanceUID")
    if study:
        check_uid(study, "StudyInstanceUID")
    if series:
        check_uid(series, "SeriesInstanceUID")
    return sop, sop_class, study or MISSING, series or MISSING


def _plan(fh: BinaryIO, ds: Dataset, header_end: int, size: int) -> Dissection:
    sop, sop_class, study, series = _identify(ds)
    ts, inferred = _transfer_syntax(ds)
    implicit, little = ds.original_encoding
    # pydicom records both flags whenever it reads a file, as it did here.
    assert implicit is not None and little is not None

    def result(
        pixel: PixelInfo | None, plan: FramePlan, segments: list[Segment]
    ) -> Dissection:
        return Dissection(
            ds, sop, sop_class, study, series, ts, inferred, pixel, plan, segments, size
        )

    whole: list[Segment] = [("L", 0, size)]
    if ts == DeflatedExplicitVRLittleEndian or header_end >= size:
        # Deflated data sets have no byte offsets to point at; files without
        # pixel data are kept whole.
        pixel = None
        why = "no pixel data"
        if ts == DeflatedExplicitVRLittleEndian and ds.get("Rows"):
            # pydicom inflated the data set to read it, so the attributes
            # are known; the frames are decoded from the whole file.
            pixel = _pixel_info(ds, "PixelData")
            why = "deflated data set"
        return result(pixel, FramePlan("whole", why_whole=why), whole)

    fh.seek(header_end)
    tag, _vr, length, header_size = _element_header(fh, implicit, little)
    if tag not in PIXEL_TAGS:
        raise MalformedDicomError(
            f"expected pixel data at byte {header_end}, found tag {tag:08X}"
        )
    pixel = _pixel_info(ds, PIXEL_TAGS[tag])
    value_offset = header_end + header_size

    if length == _UNDEFINED:
        bot, fragments, end = _fragments(fh, value_offset, size)
        frames = _split_frames(
            fh, fragments, bot, pixel.number_of_frames, _extended_offsets(ds)
        )
        if isinstance(frames, str):
            return result(pixel, FramePlan("whole", why_whole=frames), whole)
        trailer = _read_trailer(fh, end, size, implicit, little)
        if trailer is not None:
            ds.update(trailer)
        segments: list[Segment] = []
        cursor = 0
        for index, frame in enumerate(frames):
            frame_pos = 0
            for offset, frag_len in frame:
                segments.append(("L", cursor, offset))
                segments.append(("F", index, frame_pos, frag_len))
                frame_pos += frag_len
                cursor = offset + frag_len
        segments.append(("L", cursor, size))
        plan = FramePlan("encapsulated", count=len(frames), frames=frames)
        return result(pixel, plan, _merge(segments))

    frame_nbytes = native_frame_nbytes(pixel)
    expected = frame_nbytes * pixel.number_of_frames
    if value_offset + length > size:
        raise MalformedDicomError(
            f"pixel data claims {length} bytes but only {size - value_offset} "
            "remain in the file (truncated upload?)"
        )
    if frame_nbytes == 0:
        bits = (
            pixel.rows
            * pixel.columns
            * pixel.samples_per_pixel
            * pixel.number_of_frames
        )
        if (
            length not in ((bits + 7) // 8, (bits + 7) // 8 + 1)
            and length != ((bits + 15) // 16) * 2
        ):
            raise MalformedDicomError(
                f"pixel data length {length} does not match {pixel.rows} rows x "
                f"{pixel.columns} columns x {pixel.samples_per_pixel} samples x "
                f"{pixel.number_of_frames} frames at 1 bit ({(bits + 7) // 8} bytes)"
            )
        return result(
            pixel,
            FramePlan("whole", why_whole="1-bit frames are not byte aligned"),
            whole,
        )
    if length not in (expected, expected + 1) or (
        length == expected + 1 and expected % 2 == 0
    ):
        raise MalformedDicomError(
            f"pixel data length {length} does not match {pixel.rows} rows x "
            f"{pixel.columns} columns x {pixel.samples_per_pixel} samples x "
            f"{pixel.bits_allocated} bits x {pixel.number_of_frames} frames "
            f"= {expected} bytes"
        )
    end = value_offset + length
    trailer = _read_trailer(fh, end, size, implicit, little)
    if trailer is not None:
        ds.update(trailer)
    swap = pixel.bits_allocated // 8 if not little and pixel.bits_allocated > 8 else 0
    segments = [("L", 0, value_offset)]
    segments += [("F", i, 0, frame_nbytes) for i in range(pixel.number_of_frames)]
    segments.append(("L", value_offset + expected, size))
    plan = FramePlan(
        "native",
        count=pixel.number_of_frames,
        frame_nbytes=frame_nbytes,
        value_offset=value_offset,
        swap=swap,
    )
    return result(pixel, plan, _merge(segments))


def _merge(segments: list[Segment]) -> list[Segment]:
    """Drop empty literal segments and join adjacent ones."""
    merged: list[Segment] = []
    for seg in segments:
        if seg[0] == "L":
            if seg[2] <= seg[1]:
                continue
            if merged and merged[-1][0] == "L" and merged[-1][2] == seg[1]:
                merged[-1] = ("L", merged[-1][1], seg[2])
                continue
        merged.append(seg)
    return merged
