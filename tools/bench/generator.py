"""Seeded DICOM test data for the benchmark; nothing is downloaded.

The data sets are cached in a folder named for the generator's version and
seed, so a second run reuses the files (the JPEG 2000 set takes minutes).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
)

GENERATOR_VERSION = 1
ROWS = COLUMNS = 512
FRAME_BYTES = ROWS * COLUMNS * 2
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
UID_ROOT = "1.2.826.0.1.3680043.10.1386."
MODALITIES = ("CT", "MR", "CR", "US", "DX", "MG", "PT", "NM")
SURNAMES = ("SMITH", "GARCIA", "MULLER", "ROSSI", "DUBOIS", "NOVAK", "TANAKA")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much data to generate; ``full`` is the issue's, ``quick`` for
    development."""

    ct_instances: int
    mr_frames: int
    mixed_studies: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(ct_instances=300, mr_frames=1000, mixed_studies=300)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(ct_instances=30, mr_frames=60, mixed_studies=40)


@dataclass(frozen=True, slots=True)
class MultiFrame:
    """A generated multi-frame file and where each frame's bytes sit in it."""

    path: Path
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    # (offset, length) of each frame's stored bytes, in frame order; for an
    # encapsulated file the length includes the fragment's padding byte.
    frames: list[tuple[int, int]]

    def frame_bytes(self, number: int) -> bytes:
        """The stored bytes of 1-based frame ``number``, read from the file."""
        offset, length = self.frames[number - 1]
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)


@dataclass(frozen=True, slots=True)
class BenchData:
    """Every generated data set, with the identifiers the queries need."""

    root: Path
    ct: list[Path]
    ct_study_uid: str
    ct_series_uid: str
    mr: MultiFrame
    mr_j2k: MultiFrame
    mixed: list[Path]
    patient_id: str

    def bytes_of(self, paths: list[Path]) -> int:
        return sum(p.stat().st_size for p in paths)


def make_uid(rng: np.random.Generator) -> str:
    """A UID under the benchmark's root, drawn from ``rng``."""
    return UID_ROOT + str(int(rng.integers(1, 2**62)))


def phantom(rng: np.random.Generator, slice_index: int, count: int) -> np.ndarray:
    """One 512x512 slice of an anatomy-like phantom, 12 bits stored.

    An elliptic body of soft tissue with a bone ring, two lungs, a spine and
    a few organs whose size changes along the slices, plus Gaussian noise.
    """
    z = slice_index / max(count - 1, 1)
    y, x = np.mgrid[-1 : 1 : ROWS * 1j, -1 : 1 : COLUMNS * 1j]
    img = np.full((ROWS, COLUMNS), 24.0)
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2
    img[body < 1.0] = 1040.0
    img[(body < 1.0) & (body > 0.9)] = 1900.0
    for side in (-1, 1):
        lung = ((x - side * 0.38) / (0.25 + 0.05 * z)) ** 2 + (y / 0.42) ** 2
        img[lung < 1.0] = 220.0
    spine = (x / 0.09) ** 2 + ((y - 0.45) / 0.09) ** 2
    img[spine < 1.0] = 2300.0
    heart = ((x + 0.08) / (0.2 * (1 - z) + 0.05)) ** 2 + ((y + 0.05) / 0.18) ** 2
    img[heart < 1.0] = 1120.0
    img += rng.normal(0.0, 18.0, img.shape)
    slice_pixels: np.ndarray = np.clip(img, 0, 4095).astype("<u2")
    return slice_pixels


def _file_meta(sop_class: str, sop_uid: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _base(
    sop_class: str, sop_uid: str, study_uid: str, series_uid: str, modality: str
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    return ds


def _image_module(ds: Dataset, bits_stored: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0


def _patient(ds: Dataset, patient_id: str, name: str, study_date: str) -> None:
    ds.PatientID = patient_id
    ds.PatientName = name
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"


def write_ct_series(out: Path, rng: np.random.Generator, count: int) -> list[Path]:
    """(a) A CT-like series of ``count`` single-frame instances."""
    out.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = make_uid(rng), make_uid(rng)
    paths = []
    for index in range(count):
        sop_uid = make_uid(rng)
        ds = _base(CT_IMAGE_STORAGE, sop_uid, study_uid, series_uid, "CT")
        _patient(ds, "BENCH-CT-0001", "PHANTOM^CT", "20240115")
        _image_module(ds, 12)
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = phantom(rng, index, count).tobytes()
        ds.file_meta = _file_meta(CT_IMAGE_STORAGE, sop_uid, ExplicitVRLittleEndian)
        path = out / f"ct_{index + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _mr_dataset(
    sop_uid: str, study_uid: str, series_uid: str, frames: int, syntax: str
) -> Dataset:
    ds = _base(ENHANCED_MR_STORAGE, sop_uid, study_uid, series_uid, "MR")
    _patient(ds, "BENCH-MR-0001", "PHANTOM^MR", "20240116")
    _image_module(ds, 16)
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ContentDate = "20240116"
    ds.ContentTime = "101500"
    ds.AcquisitionDateTime = "20240116101500"
    ds.file_meta = _file_meta(ENHANCED_MR_STORAGE, sop_uid, syntax)
    return ds


def _mr_frames(seed: int, frames: int) -> Iterator[np.ndarray]:
    # A fresh generator per data set, so (b) and (c) hold the same pixels.
    rng = np.random.default_rng([seed, 2])
    for index in range(frames):
        yield phantom(rng, index, frames)


def write_multiframe(
    path: Path, seed: int, frames: int, encapsulate: bool, uids: tuple[str, str, str]
) -> MultiFrame:
    """(b) or (c): one enhanced-MR-like instance written frame by frame.

    Only one frame is held in memory: the header is written by pydicom, then
    the Pixel Data element is appended by hand (native: one OW value;
    encapsulated: an empty basic offset table and one fragment per frame,
    PS3.5 A.4).
    """
    sop_uid, study_uid, series_uid = uids
    syntax = JPEG2000Lossless if encapsulate else ExplicitVRLittleEndian
    ds = _mr_dataset(sop_uid, study_uid, series_uid, frames, syntax)
    tmp = path.with_name(path.name + ".part")
    offsets: list[tuple[int, int]] = []
    with open(tmp, "wb") as fh:
        pydicom.dcmwrite(fh, ds, enforce_file_format=True)
        if not encapsulate:
            fh.write(
                struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * FRAME_BYTES)
            )
            for frame in _mr_frames(seed, frames):
                offsets.append((fh.tell(), FRAME_BYTES))
                fh.write(frame.tobytes())
        else:
            from openjpeg.utils import encode_array

            fh.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
            fh.write(struct.pack("<HHI", 0xFFFE, 0xE000, 0))
            for frame in _mr_frames(seed, frames):
                code = bytes(encode_array(frame, bits_stored=16, use_mct=False))
                if len(code) % 2:
                    code += b"\x00"
                fh.write(struct.pack("<HHI", 0xFFFE, 0xE000, len(code)))
                offsets.append((fh.tell(), len(code)))
                fh.write(code)
            fh.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    tmp.replace(path)
    return MultiFrame(path, sop_uid, study_uid, series_uid, syntax, offsets)


def write_mixed_studies(out: Path, rng: np.random.Generator, count: int) -> list[Path]:
    """(d) ``count`` small studies of mixed modalities, dates and names."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        modality = MODALITIES[index % len(MODALITIES)]
        study_uid, series_uid = make_uid(rng), make_uid(rng)
        year = 2015 + index % 10
        date = f"{year}{1 + index % 12:02d}{1 + index % 28:02d}"
        name = f"{SURNAMES[index % len(SURNAMES)]}^P{index:04d}"
        for number in range(1 + index % 3):
            sop_uid = make_uid(rng)
            ds = _base(SECONDARY_CAPTURE, sop_uid, study_uid, series_uid, modality)
            _patient(ds, f"BENCH-{index:05d}", name, date)
            ds.InstanceNumber = number + 1
            ds.ConversionType = "WSD"
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = ds.Columns = 64
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
            ds.PixelRepresentation = 0
            ds.PixelData = rng.integers(0, 255, (64, 64), dtype="u1").tobytes()
            ds.file_meta = _file_meta(
                SECONDARY_CAPTURE, sop_uid, ExplicitVRLittleEndian
            )
            path = out / f"mixed_{index:05d}_{number}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def generate(cache: Path, seed: int, sizes: Sizes) -> BenchData:
    """Every data set, generated once into ``cache`` and reused after.

    Parameters
    ----------
    cache
        Parent folder; the data goes to a sub-folder named for the
        generator version, seed and sizes.
    seed
        Seed of every random choice (UIDs, noise, names).
    sizes
        How many instances, frames and studies.
    """
    key = (
        f"v{GENERATOR_VERSION}-seed{seed}-ct{sizes.ct_instances}"
        f"-mr{sizes.mr_frames}-mixed{sizes.mixed_studies}"
    )
    root = cache / key
    index_path = root / "index.json"
    if index_path.exists():
        return load(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 1])
    ct = write_ct_series(root / "ct", rng, sizes.ct_instances)
    uids = (make_uid(rng), make_uid(rng), make_uid(rng))
    mr = write_multiframe(root / "mr.dcm", seed, sizes.mr_frames, False, uids)
    j2k_uids = (make_uid(rng), make_uid(rng), make_uid(rng))
    mr_j2k = write_multiframe(
        root / "mr_j2k.dcm", seed, sizes.mr_frames, True, j2k_uids
    )
    mixed = write_mixed_studies(root / "mixed", rng, sizes.mixed_studies)
    first = pydicom.dcmread(ct[0], stop_before_pixels=True)
    index = {
        "ct": [p.name for p in ct],
        "ct_study_uid": str(first.StudyInstanceUID),
        "ct_series_uid": str(first.SeriesInstanceUID),
        "mr": _describe(mr),
        "mr_j2k": _describe(mr_j2k),
        "mixed": [p.name for p in mixed],
        "patient_id": "BENCH-00007",
    }
    # The index is written last: a half-generated folder is regenerated.
    index_path.write_text(json.dumps(index))
    return load(root)


def _describe(item: MultiFrame) -> dict[str, object]:
    return {
        "file": item.path.name,
        "sop_instance_uid": item.sop_instance_uid,
        "study_uid": item.study_uid,
        "series_uid": item.series_uid,
        "transfer_syntax_uid": item.transfer_syntax_uid,
        "frames": item.frames,
    }


def _multiframe(root: Path, raw: dict[str, object]) -> MultiFrame:
    frames = [(int(o), int(n)) for o, n in raw["frames"]]  # type: ignore[attr-defined]
    return MultiFrame(
        root / str(raw["file"]),
        str(raw["sop_instance_uid"]),
        str(raw["study_uid"]),
        str(raw["series_uid"]),
        str(raw["transfer_syntax_uid"]),
        frames,
    )


def load(root: Path) -> BenchData:
    """The data sets described by ``root/index.json``."""
    index = json.loads((root / "index.json").read_text())
    return BenchData(
        root=root,
        ct=[root / "ct" / name for name in index["ct"]],
        ct_study_uid=index["ct_study_uid"],
        ct_series_uid=index["ct_series_uid"],
        mr=_multiframe(root, index["mr"]),
        mr_j2k=_multiframe(root, index["mr_j2k"]),
        mixed=[root / "mixed" / name for name in index["mixed"]],
        patient_id=index["patient_id"],
    )
