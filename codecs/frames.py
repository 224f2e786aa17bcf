"""Decode one frame to a pixel array, the way pydicom decodes a whole file.

Each frame is handed to pydicom's own decoders inside a minimal one-frame
data set, so that a decoded frame equals the matching frame of pydicom's
``pixel_array`` for the original file (same colour conversion, same sign
handling). Deflated Image Frame Compression, which pydicom 3.0 does not
decode, is inflated here and then decoded as native pixel data.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"
NATIVE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)


class FrameDecodeError(Exception):
    """A frame could not be decoded; the message says why."""


@dataclass(frozen=True, slots=True)
class FrameDescription:
    """What it takes to interpret one frame's bytes."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    pixel_keyword: str = "PixelData"


def is_native_transfer_syntax(uid: str) -> bool:
    """Whether pixel data in this transfer syntax is native (not encapsulated)."""
    return uid in NATIVE_SYNTAXES


def native_dtype(desc: FrameDescription) -> np.dtype:
    """The little-endian numpy dtype of one stored native sample."""
    if desc.pixel_keyword == "FloatPixelData":
        return np.dtype("<f4")
    if desc.pixel_keyword == "DoubleFloatPixelData":
        return np.dtype("<f8")
    kind = "i" if desc.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{max(1, desc.bits_allocated // 8)}")


def native_shape(desc: FrameDescription) -> tuple[int, ...]:
    """Shape of one native frame as stored (samples last unless planar)."""
    if (
        desc.photometric_interpretation == "YBR_FULL_422"
        and desc.samples_per_pixel == 3
    ):
        return (desc.rows * desc.columns * 2 * desc.bits_allocated // 8,)
    if desc.samples_per_pixel == 1:
        return (desc.rows, desc.columns)
    if desc.planar_configuration == 1:
        return (desc.samples_per_pixel, desc.rows, desc.columns)
    return (desc.rows, desc.columns, desc.samples_per_pixel)


def _one_frame_dataset(desc: FrameDescription, transfer_syntax_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    ds.Rows = desc.rows
    ds.Columns = desc.columns
    ds.SamplesPerPixel = desc.samples_per_pixel
    ds.BitsAllocated = desc.bits_allocated
    ds.BitsStored = desc.bits_stored
    ds.HighBit = desc.high_bit
    ds.PixelRepresentation = desc.pixel_representation
    ds.PhotometricInterpretation = desc.photometric_interpretation
    if desc.samples_per_pixel > 1:
        ds.PlanarConfiguration = desc.planar_configuration
    ds.NumberOfFrames = 1
    return ds


def decode_frame(
    data: bytes, desc: FrameDescription, transfer_syntax_uid: str
) -> np.ndarray:
    """Decode one frame to an array equal to pydicom's ``pixel_array`` frame.

    Parameters
    ----------
    data
        The frame bytes: little-endian native samples, or one compressed
        bitstream of ``transfer_syntax_uid``.
    desc
        The frame's pixel description.
    transfer_syntax_uid
        The transfer syntax of ``data``; for native frames pass any native
        syntax (the bytes are always little endian here).

    Raises
    ------
    FrameDecodeError
        When no installed decoder handles the bitstream.
    """
    if transfer_syntax_uid == DEFLATED_IMAGE_FRAME:
        try:
            data = zlib.decompress(data, -zlib.MAX_WBITS)
        except zlib.error as err:
            raise FrameDecodeError(
                f"deflated image frame does not inflate: {err}"
            ) from None
        transfer_syntax_uid = ExplicitVRLittleEndian
    native = is_native_transfer_syntax(transfer_syntax_uid)
    ds = _one_frame_dataset(
        desc, ExplicitVRLittleEndian if native else transfer_syntax_uid
    )
    if native:
        if len(data) % 2:
            data += b"\x00"
        setattr(ds, desc.pixel_keyword, data)
    else:
        ds.PixelData = encapsulate([data])
    try:
        return np.asarray(ds.pixel_array)
    except Exception as err:  # noqa: BLE001 - decoders raise many kinds
        raise FrameDecodeError(
            f"cannot decode a frame of transfer syntax {transfer_syntax_uid}: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
