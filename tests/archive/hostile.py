"""Hand-made DICOM headers for the hostile-input tests."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage


def make_instance(
    path: Path,
    sop_uid: str = "1.2.826.0.1.3680043.8.498.1",
    *,
    depth: int = 0,
    long_value: int = 0,
    study_uid: str = "1.2.826.0.1.3680043.8.498.2",
) -> Path:
    """Write a small Secondary Capture instance with optional hostile parts.

    ``depth`` nests that many sequences inside each other; ``long_value``
    adds an OB private element of that many bytes.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = study_uid + ".1"
    ds.PatientName = "HOSTILE^INPUT"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = 4, 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    if depth:
        inner = Dataset()
        inner.CodeValue = "leaf"
        for _ in range(depth):
            outer = Dataset()
            outer.ReferencedImageSequence = Sequence([inner])
            inner = outer
        ds.ReferencedImageSequence = inner.ReferencedImageSequence
    if long_value:
        ds.add_new(0x00091010, "OB", b"\x01" * long_value)
    ds.PixelData = bytes(range(16))
    ds.save_as(path, enforce_file_format=True)
    return path
