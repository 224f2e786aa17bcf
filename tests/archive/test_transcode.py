"""Transcoding and rendering of frames and instances, on real corpus files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from openjpeg import decode as j2k_decode
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from dicomvault.archive import transcode
from dicomvault.archive.errors import InvalidInputError, UnsupportedError
from dicomvault.codecs import FrameDescription


def _desc(ds: pydicom.Dataset) -> FrameDescription:
    return FrameDescription(
        rows=ds.Rows,
        columns=ds.Columns,
        samples_per_pixel=ds.SamplesPerPixel,
        bits_allocated=ds.BitsAllocated,
        bits_stored=ds.BitsStored,
        high_bit=ds.HighBit,
        pixel_representation=ds.PixelRepresentation,
        photometric_interpretation=ds.PhotometricInterpretation,
        planar_configuration=int(ds.get("PlanarConfiguration", 0)),
    )


class TestTranscodeInstance:
    def test_big_endian_instance_becomes_little_endian_with_equal_pixels(
        self, corpus: Path
    ) -> None:
        """Explicit VR Big Endian transcodes to Explicit VR Little Endian."""
        path = corpus / "mr_brain_siemens_trio_explicit_be.dcm"
        out = transcode.transcode_instance(path.read_bytes(), ExplicitVRLittleEndian)
        ds = pydicom.dcmread(io.BytesIO(out))
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(path).pixel_array)

    def test_unservable_syntax_is_refused_listing_the_choices(
        self, corpus: Path
    ) -> None:
        """JPEG baseline is not a target; the error lists what is."""
        with pytest.raises(
            UnsupportedError,
            match=r"^cannot serve transfer syntax 1\.2\.840\.10008\.1\.2\.4\.50; "
            r"available: \* \(as stored\), 1\.2\.840\.10008\.1\.2\.1, "
            r"1\.2\.840\.10008\.1\.2\.4\.90$",
        ):
            transcode.transcode_instance(b"", "1.2.840.10008.1.2.4.50")


class TestEncodeFrame:
    def test_jpeg2000_round_trip_is_lossless_for_12_bit_mr(self, corpus: Path) -> None:
        """A 12-bit frame encoded as JPEG 2000 decodes to the same pixels."""
        ds = pydicom.dcmread(corpus / "mr_brain_siemens_trio_rle.dcm")
        data = transcode.encode_frame(ds.pixel_array, _desc(ds), JPEG2000Lossless)
        assert np.array_equal(j2k_decode(data), ds.pixel_array)

    def test_explicit_vr_little_endian_is_not_an_encoding_target(
        self, corpus: Path
    ) -> None:
        """Frames are encoded only to JPEG 2000; decoded frames need no encoder."""
        ds = pydicom.dcmread(corpus / "mr_brain_siemens_trio_rle.dcm")
        with pytest.raises(
            UnsupportedError,
            match=r"^frames are not encoded as 1\.2\.840\.10008\.1\.2\.1$",
        ):
            transcode.encode_frame(ds.pixel_array, _desc(ds), ExplicitVRLittleEndian)


class TestRender:
    def test_window_maps_center_to_mid_grey_and_clips_outside(self) -> None:
        """Values at the window centre are mid-grey; below and above clip."""
        pixels = np.array([[0, 100, 200]], dtype=np.uint16)
        desc = FrameDescription(1, 3, 1, 16, 12, 11, 0, "MONOCHROME2", 0)
        png = transcode.render_frame(
            pixels, desc, transcode.Window(100, 101), "image/png"
        )
        grey = np.asarray(Image.open(io.BytesIO(png)))
        assert grey.tolist() == [[0, 128, 255]]

    def test_monochrome1_renders_inverted(self) -> None:
        """MONOCHROME1 shows low values bright."""
        pixels = np.array([[0, 200]], dtype=np.uint16)
        desc = FrameDescription(1, 2, 1, 16, 12, 11, 0, "MONOCHROME1", 0)
        png = transcode.render_frame(pixels, desc, None, "image/png")
        assert np.asarray(Image.open(io.BytesIO(png))).tolist() == [[255, 0]]

    def test_bad_window_parameter_is_named(self) -> None:
        """A window without a width is refused naming the parameter."""
        with pytest.raises(
            InvalidInputError,
            match=r"^parameter window='40' is not center,width\[,function\] "
            r"\(e\.g\. window=40,400\)$",
        ):
            transcode.parse_window("40")
