"""The seeded data generator: what it writes, and that it is repeatable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from dicomvault.tools.bench.generator import BenchData, generate
from tests.tools.bench.conftest import TINY


class TestGenerate:
    def test_ct_slices_are_512_square_12_bit_explicit_little_endian(
        self, tiny: BenchData
    ) -> None:
        """Each CT slice is 512x512, 16 bits allocated, 12 stored, no value above."""
        ds = pydicom.dcmread(tiny.ct[1])
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored) == (
            512,
            512,
            16,
            12,
        )
        pixels = ds.pixel_array
        assert pixels.max() <= 4095 and pixels.std() > 100
        assert str(ds.SeriesInstanceUID) == tiny.ct_series_uid

    def test_native_frame_offsets_point_at_each_frame_pydicom_reads(
        self, tiny: BenchData
    ) -> None:
        """The recorded offset of every native frame holds that frame's pixels."""
        pixels = pydicom.dcmread(tiny.mr.path).pixel_array
        assert pixels.shape == (TINY.mr_frames, 512, 512)
        for number in range(1, TINY.mr_frames + 1):
            assert tiny.mr.frame_bytes(number) == pixels[number - 1].tobytes()

    def test_jpeg2000_copy_decodes_to_the_same_pixels_as_the_native_one(
        self, tiny: BenchData
    ) -> None:
        """(c) is lossless: decoded, it equals (b) pixel for pixel."""
        ds = pydicom.dcmread(tiny.mr_j2k.path)
        assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
        native = pydicom.dcmread(tiny.mr.path).pixel_array
        assert np.array_equal(ds.pixel_array, native)
        assert tiny.mr_j2k.frame_bytes(1)[:4] == b"\xff\x4f\xff\x51"

    def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(
        self, tiny: BenchData, tmp_path: Path
    ) -> None:
        """Generation is repeatable from the seed alone."""
        again = generate(tmp_path / "same", 5, TINY)
        other = generate(tmp_path / "other", 6, TINY)
        assert again.ct[0].read_bytes() == tiny.ct[0].read_bytes()
        assert again.mr_j2k.path.read_bytes() == tiny.mr_j2k.path.read_bytes()
        assert other.ct[0].read_bytes() != tiny.ct[0].read_bytes()

    def test_second_call_reuses_the_cache_without_rewriting(
        self, tiny: BenchData, tiny_cache: Path
    ) -> None:
        """A cached folder with its index is loaded, not generated again."""
        before = tiny.mr.path.stat().st_mtime_ns
        again = generate(tiny_cache, 5, TINY)
        assert again.mr.path.stat().st_mtime_ns == before
        assert again.mr.frames == tiny.mr.frames

    def test_folder_without_index_is_generated_again(self, tmp_path: Path) -> None:
        """A half-written cache (no index.json yet) is not trusted."""
        first = generate(tmp_path, 5, TINY)
        (first.root / "index.json").unlink()
        first.ct[0].write_bytes(b"truncated")
        second = generate(tmp_path, 5, TINY)
        assert pydicom.dcmread(second.ct[0]).Rows == 512

    def test_mixed_studies_span_modalities_names_and_dates(
        self, tiny: BenchData
    ) -> None:
        """(d) holds several modalities, and the queried patient ID exists."""
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in tiny.mixed]
        assert len({h.Modality for h in headers}) == 8
        assert len({h.StudyInstanceUID for h in headers}) == TINY.mixed_studies
        assert tiny.patient_id in {h.PatientID for h in headers}
