"""Retrieval by the DICOM hierarchy: what a study, series or instance holds.

The views a web retrieval needs, over the catalog and the stored objects:
the instances under a study or series, an instance's metadata as DICOM JSON
with ``BulkDataURI`` references, one bulk data element, and frames in a
requested transfer syntax. Nothing here changes stored data.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian

from dicomvault.archive import transcode
from dicomvault.archive.errors import (
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
    UnsupportedError,
)
from dicomvault.archive.uids import MISSING, check_uid

if TYPE_CHECKING:
    from dicomvault.archive.index import InstanceRecord
    from dicomvault.archive.retrieve import FrameOut
    from dicomvault.archive.service import Archive

PIXEL_DATA_TAG = "7FE00010"
# Bulk data is read from the whole instance in memory; above this it is
# refused (frames of large instances stay reachable through .../frames).
MAX_BULKDATA_INSTANCE_BYTES = 1 << 30


def select_instances(
    archive: Archive, study_uid: str, series_uid: str = "", sop_uid: str = ""
) -> list[InstanceRecord]:
    """The records of a study, of one of its series, or of one instance.

    Raises
    ------
    NotFoundError
        Nothing is stored under these UIDs.
    """
    # Instances without a study or series UID are filed under MISSING;
    # their retrieve URLs name it, so it is accepted here.
    if study_uid != MISSING:
        check_uid(study_uid, "StudyInstanceUID")
    if series_uid and series_uid != MISSING:
        check_uid(series_uid, "SeriesInstanceUID")
    if sop_uid:
        check_uid(sop_uid, "SOPInstanceUID")
    members = archive.index.catalog.study_members(study_uid)
    chosen = [
        sop
        for series, sop in members
        if (not series_uid or series == series_uid) and (not sop_uid or sop == sop_uid)
    ]
    records = [r for sop in chosen if (r := archive.index.catalog.get(sop)) is not None]
    if not records:
        what = f"study {study_uid}"
        if series_uid:
            what += f", series {series_uid}"
        if sop_uid:
            what += f", instance {sop_uid}"
        raise NotFoundError(f"nothing is stored under {what}")
    return records


def instance_metadata(archive: Archive, record: InstanceRecord) -> dict[str, Any]:
    """An instance's data set as DICOM JSON; bulk data as relative BulkDataURIs.

    Each ``BulkDataURI`` is ``bulkdata/GGGGEEEE``, relative to the instance;
    pixel data is one of them when the instance has pixels.
    """
    version = record.current_version
    manifest = archive.reader.manifest(version)
    metadata = dict(manifest.metadata)
    if manifest.pixel is not None and PIXEL_DATA_TAG not in metadata:
        bits = int(manifest.pixel.get("bits_allocated", 16))
        metadata[PIXEL_DATA_TAG] = {
            "vr": "OB" if bits <= 8 else "OW",
            "BulkDataURI": f"bulkdata/{PIXEL_DATA_TAG}",
        }
    return dict(sorted(metadata.items()))


def read_bulkdata(archive: Archive, record: InstanceRecord, tag: str) -> bytes:
    """The value bytes of one element of an instance, as stored.

    Raises
    ------
    InvalidInputError
        ``tag`` is not eight hexadecimal digits.
    NotFoundError
        The instance has no such element.
    LimitExceededError
        The instance is too large to read whole.
    """
    try:
        tag_value = int(tag, 16)
    except ValueError:
        tag_value = -1
    if len(tag) != 8 or tag_value < 0:
        raise InvalidInputError(
            f"bulk data tag {tag!r} is not eight hexadecimal digits (GGGGEEEE)"
        )
    size = record.current_version.size
    if size > MAX_BULKDATA_INSTANCE_BYTES:
        raise LimitExceededError(
            f"instance {record.sop_instance_uid} is {size} bytes, above the "
            f"{MAX_BULKDATA_INSTANCE_BYTES} byte limit for bulk data reads; "
            "fetch its frames instead"
        )

    _record, stream = archive.retrieve(record.sop_instance_uid)
    ds = pydicom.dcmread(io.BytesIO(b"".join(stream)), force=True)
    if tag_value not in ds:
        raise NotFoundError(
            f"instance {record.sop_instance_uid} has no element ({tag[:4]},{tag[4:]})"
        )
    value = ds[tag_value].value
    if not isinstance(value, bytes | bytearray):
        vr = ds[tag_value].VR
        raise NotFoundError(
            f"element ({tag[:4]},{tag[4:]}) of instance {record.sop_instance_uid} "
            f"is not bulk data (VR {vr})"
        )
    return bytes(value)


def frame_array(frame: FrameOut) -> np.ndarray:
    """A decoded frame's bytes as an array of its own shape and type."""
    return np.frombuffer(frame.data, dtype=np.dtype(frame.dtype)).reshape(frame.shape)


def frames_in(
    archive: Archive, sop_uid: str, numbers: list[int], transfer_syntax_uid: str
) -> Iterator[tuple[int, bytes, str]]:
    """Yield (number, bytes, transfer syntax) of frames in the requested form.

    ``*`` yields the frames as stored; Explicit VR Little Endian yields
    decoded little-endian samples; JPEG 2000 lossless re-encodes them.

    Raises
    ------
    UnsupportedError
        A transfer syntax that cannot be served, or no codec for the frames.
    NotFoundError
        A frame number out of range.
    """
    transcode.check_target(transfer_syntax_uid)
    if transfer_syntax_uid == transcode.AS_STORED:
        for frame in archive.frames(sop_uid, numbers, decode=False):
            yield frame.number, frame.data, frame.transfer_syntax_uid
        return
    for frame in archive.frames(sop_uid, numbers, decode=True):
        if transfer_syntax_uid == ExplicitVRLittleEndian:
            yield frame.number, frame.data, ExplicitVRLittleEndian
            continue
        if frame.description is None:
            raise UnsupportedError(f"instance {sop_uid} has no pixel description")
        encoded = transcode.encode_frame(
            frame_array(frame), frame.description, transfer_syntax_uid
        )
        yield frame.number, encoded, transfer_syntax_uid


def render(
    archive: Archive,
    sop_uid: str,
    number: int,
    media_type: str,
    window: transcode.Window | None,
) -> bytes:
    """Frame ``number`` of an instance as a JPEG or PNG picture.

    Without ``window`` the instance's own Window Center/Width is used.
    """
    record = archive.record(sop_uid)
    metadata = instance_metadata(archive, record)
    frame = next(iter(archive.frames(sop_uid, [number], decode=True)))
    if frame.description is None:
        raise UnsupportedError(f"instance {sop_uid} has no pixel description")

    def number_of(tag: str, default: float) -> float:
        values = metadata.get(tag, {}).get("Value")
        return float(values[0]) if values else default

    return transcode.render_frame(  # type: ignore[no-any-return]
        frame_array(frame),
        frame.description,
        window or transcode.instance_window(metadata),
        media_type,
        slope=number_of("00281053", 1.0),
        intercept=number_of("00281052", 0.0),
    )


def upload_study_uid(path: str) -> str:
    """The Study Instance UID of a spooled upload ('' if it has none)."""
    try:
        ds = pydicom.dcmread(
            path,
            force=True,
            stop_before_pixels=True,
            specific_tags=["StudyInstanceUID"],
        )
    except Exception:  # noqa: BLE001 - ingest reports what is wrong with the file
        return ""
    return str(ds.get("StudyInstanceUID", ""))
