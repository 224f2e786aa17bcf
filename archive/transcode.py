"""Transcoding and rendering: stored instances and frames in another form.

Both front doors serve an instance as stored (bit-exact) by default; this
module covers the other forms a client may ask for:

- a whole instance in another **transfer syntax** (decoded to Explicit VR
  Little Endian, or re-encoded as JPEG 2000 lossless);
- one **frame** re-encoded from its decoded pixels (JPEG 2000 lossless);
- one frame **rendered** as an 8-bit JPEG or PNG picture through a window.

Lossless targets decode back to the very pixels the stored frame holds.
Transcoding works on one instance in memory; the size limit is
:data:`MAX_TRANSCODE_BYTES`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
)

from dicomvault.archive.errors import (
    InvalidInputError,
    LimitExceededError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from dicomvault.codecs import FrameDescription

AS_STORED = "*"
# Transfer syntaxes an instance or a frame can be converted to. HTJ2K is
# absent: the installed OpenJPEG binding decodes it but cannot encode it.
TARGET_SYNTAXES = (ExplicitVRLittleEndian, JPEG2000Lossless)
MAX_TRANSCODE_BYTES = 1 << 30
RENDER_MEDIA_TYPES = ("image/jpeg", "image/png")


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window: centre and width, as in Window Center/Width (C.11.2)."""

    center: float
    width: float


def check_target(transfer_syntax_uid: str) -> None:
    """Refuse a transfer syntax this archive cannot convert to.

    Raises
    ------
    UnsupportedError
        Naming the syntaxes that can be served.
    """
    if transfer_syntax_uid != AS_STORED and transfer_syntax_uid not in (
        TARGET_SYNTAXES
    ):
        raise UnsupportedError(
            f"cannot serve transfer syntax {transfer_syntax_uid}; available: "
            + ", ".join([AS_STORED + " (as stored)", *TARGET_SYNTAXES])
        )


def transcode_instance(data: bytes, transfer_syntax_uid: str) -> bytes:
    """The instance ``data`` re-encoded in ``transfer_syntax_uid``.

    Raises
    ------
    LimitExceededError
        The instance is larger than :data:`MAX_TRANSCODE_BYTES`.
    UnsupportedError
        Its pixel data cannot be decoded or encoded.
    """
    check_target(transfer_syntax_uid)
    if len(data) > MAX_TRANSCODE_BYTES:
        raise LimitExceededError(
            f"instance of {len(data)} bytes is above the {MAX_TRANSCODE_BYTES} "
            "byte limit for transcoding; ask for transfer-syntax=* instead"
        )
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    stored = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if stored == transfer_syntax_uid:
        return data

    # A lossless change of transfer syntax keeps the SOP Instance UID.
    has_pixels = "PixelData" in ds
    big_endian = not ds.original_encoding[1]
    try:
        compressed = UID(stored).is_compressed
        if has_pixels and transfer_syntax_uid == JPEG2000Lossless:
            ds.compress(
                JPEG2000Lossless,
                ds.pixel_array,
                encoding_plugin="pylibjpeg",
                generate_instance_uid=False,
            )
        elif has_pixels and compressed:
            ds.decompress(generate_instance_uid=False)
        elif has_pixels and big_endian:
            # pydicom writes element values in the new byte order but leaves
            # the raw bytes of native pixel data as they are.
            arr = ds.pixel_array
            ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    except Exception as err:  # noqa: BLE001 - codec plugins raise anything
        raise UnsupportedError(
            f"cannot transcode instance {ds.get('SOPInstanceUID', '?')} from "
            f"{stored} to {transfer_syntax_uid}: {err}; "
            "ask for transfer-syntax=* instead"
        ) from None
    if not has_pixels and transfer_syntax_uid == JPEG2000Lossless:
        raise UnsupportedError(
            f"instance {ds.get('SOPInstanceUID', '?')} has no pixel data to "
            f"encode as {transfer_syntax_uid}; ask for transfer-syntax=* instead"
        )
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    ds.preamble = ds.preamble or b"\0" * 128

    out = io.BytesIO()
    # force_encoding: the source may be implicit VR or big endian.
    pydicom.dcmwrite(
        out, ds, little_endian=True, implicit_vr=False, force_encoding=True
    )
    return out.getvalue()


def encode_frame(pixels: np.ndarray, desc: FrameDescription, target: str) -> bytes:
    """One decoded frame as a JPEG 2000 lossless codestream.

    Raises
    ------
    UnsupportedError
        The frame's layout cannot be encoded losslessly.
    """
    from openjpeg.utils import encode_array

    if target != JPEG2000Lossless:
        check_target(target)
        raise UnsupportedError(f"frames are not encoded as {target}")
    try:
        return bytes(
            encode_array(
                pixels,
                bits_stored=desc.bits_stored if desc.bits_allocated > 8 else 8,
                photometric_interpretation=0,
                use_mct=False,
            )
        )
    except Exception as err:  # noqa: BLE001 - the encoder raises plain errors
        raise UnsupportedError(
            f"cannot encode a {desc.rows}x{desc.columns} frame of "
            f"{desc.bits_allocated}-bit {desc.photometric_interpretation} "
            f"as JPEG 2000 lossless: {err}"
        ) from None


def parse_window(value: str) -> Window:
    """Parse a ``window=center,width[,function]`` request parameter.

    Raises
    ------
    InvalidInputError
        Naming the parameter and the bad value.
    """
    parts = value.split(",")
    try:
        window = Window(float(parts[0]), float(parts[1]))
    except (ValueError, IndexError):
        raise InvalidInputError(
            f"parameter window={value!r} is not center,width[,function] "
            "(e.g. window=40,400)"
        ) from None
    if window.width <= 0:
        raise InvalidInputError(f"parameter window={value!r}: width must be above 0")
    return window


def instance_window(metadata: dict[str, object]) -> Window | None:
    """The first Window Center/Width of an instance's DICOM JSON, if any."""

    def first(tag: str) -> float | None:
        element = metadata.get(tag)
        values = element.get("Value") if isinstance(element, dict) else None
        return float(values[0]) if values else None

    center, width = first("00281050"), first("00281051")
    if center is None or width is None or width <= 0:
        return None
    return Window(center, width)


def render_frame(
    pixels: np.ndarray,
    desc: FrameDescription,
    window: Window | None,
    media_type: str,
    slope: float = 1.0,
    intercept: float = 0.0,
) -> bytes:
    """One decoded frame as an 8-bit JPEG or PNG picture.

    Grey images go through the modality rescale and then the window (the
    linear function of PS3.3 C.11.2.1.2); without a window the full range of
    the frame is shown. Colour images are shown as they are.

    Raises
    ------
    UnsupportedError
        A media type other than image/jpeg or image/png.
    """
    from PIL import Image

    if media_type not in RENDER_MEDIA_TYPES:
        raise UnsupportedError(
            f"cannot render as {media_type}; available: "
            + ", ".join(RENDER_MEDIA_TYPES)
        )
    if desc.samples_per_pixel == 1:
        values = pixels.astype(np.float64) * slope + intercept
        if window is None:
            low, high = float(values.min()), float(values.max())
        else:
            low = window.center - 0.5 - (window.width - 1) / 2
            high = window.center - 0.5 + (window.width - 1) / 2
        scaled = (values - low) / max(high - low, 1e-9) * 255.0
        image = np.clip(scaled, 0, 255).astype(np.uint8)
        if desc.photometric_interpretation == "MONOCHROME1":
            image = 255 - image
        picture = Image.fromarray(image, mode="L")
    else:
        rgb = pixels
        if desc.bits_allocated > 8:
            rgb = (pixels >> (desc.bits_stored - 8)).astype(np.uint8)
        if desc.photometric_interpretation.startswith("YBR"):
            from pydicom.pixels.processing import convert_color_space

            rgb = convert_color_space(rgb, desc.photometric_interpretation, "RGB")
        picture = Image.fromarray(np.asarray(rgb, dtype=np.uint8), mode="RGB")

    out = io.BytesIO()
    picture.save(out, format="JPEG" if media_type == "image/jpeg" else "PNG")
    return out.getvalue()
