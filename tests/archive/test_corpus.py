"""Every file of the real corpus through the gRPC API: stored, retrieved bit-exact,
frames equal to pydicom's decoding."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomvault.proto import archive_pb2
from tests.server import ServerProcess

# Files in the corpus that are not storable instances, and why.
NOT_INSTANCES = {
    "dicomdir_media_directory.dcm": "DICOMDIR",
    "meta_missing_transfer_syntax.dcm": "no SOP Instance UID",
    "sc_rgb_jpegls_near_lossless_no_preamble.dcm": "no SOP Instance UID",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def ingested(server: ServerProcess, corpus: Path) -> dict[str, Any]:
    """The whole corpus stored in one Store stream; results by file name."""
    files = sorted(corpus.rglob("*.dcm"))
    client = server.client()
    results = client.store(files)
    assert len(results) == len(files)
    return {"files": files, "results": {Path(r.label).name: r for r in results}}


class TestCorpusIngest:
    def test_every_storable_file_is_stored_or_shares_a_uid(
        self, ingested: dict[str, Any]
    ) -> None:
        """Each file is stored, rejected as not an instance, or shares a stored UID."""
        stored_uids = {
            r.sop_instance_uid
            for r in ingested["results"].values()
            if r.outcome == archive_pb2.STORED
        }
        for name, result in ingested["results"].items():
            if name in NOT_INSTANCES:
                assert result.outcome == archive_pb2.REJECTED
                assert NOT_INSTANCES[name].split()[-1] in result.reason
            elif result.outcome == archive_pb2.REJECTED:
                assert "already stored" in result.reason, f"{name}: {result.reason}"
                uid = _sop_uid(ingested_path(ingested, name))
                assert uid in stored_uids
            else:
                assert result.outcome == archive_pb2.STORED, f"{name}: {result.reason}"

    def test_every_stored_instance_retrieves_bit_exact(
        self, server: ServerProcess, ingested: dict[str, Any], tmp_path: Path
    ) -> None:
        """Retrieve gives back the original file's SHA-256 for every stored file."""
        client = server.client()
        checked = 0
        for path in ingested["files"]:
            result = ingested["results"][path.name]
            if result.outcome != archive_pb2.STORED:
                continue
            out = tmp_path / "out.dcm"
            info = client.retrieve(result.sop_instance_uid, out)
            assert _sha(out.read_bytes()) == _sha(path.read_bytes()), path.name
            assert info.sha256 == _sha(path.read_bytes())
            checked += 1
        assert checked >= 110

    def test_shared_uid_retrieves_the_stored_file(
        self, server: ServerProcess, ingested: dict[str, Any], tmp_path: Path
    ) -> None:
        """For files sharing a SOP Instance UID, retrieval returns the one stored."""
        by_uid: dict[str, list[Path]] = {}
        for path in ingested["files"]:
            if path.name in NOT_INSTANCES:
                continue
            uid = _sop_uid(path)
            by_uid.setdefault(uid, []).append(path)
        shared = {uid: paths for uid, paths in by_uid.items() if len(paths) > 1}
        assert shared, "the corpus has files sharing a SOP Instance UID"
        client = server.client()
        for uid, paths in shared.items():
            stored = [
                p
                for p in paths
                if ingested["results"][p.name].outcome == archive_pb2.STORED
            ]
            assert len(stored) == 1
            client.retrieve(uid, tmp_path / "x.dcm")
            assert (tmp_path / "x.dcm").read_bytes() == stored[0].read_bytes()


def _sop_uid(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    return str(ds.get("SOPInstanceUID") or ds.file_meta.MediaStorageSOPInstanceUID)


def ingested_path(ingested: dict[str, Any], name: str) -> Path:
    return next(p for p in ingested["files"] if p.name == name)


def _reference_frames(path: Path) -> np.ndarray | None:
    ds = pydicom.dcmread(path, force=True)
    if not any(
        k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
    ):
        return None
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, _little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        )
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception:  # noqa: BLE001 - files pydicom cannot decode are skipped
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return arr if frames > 1 else arr[np.newaxis]


class TestCorpusFrames:
    def test_decoded_frames_equal_pydicom_pixel_arrays(
        self, server: ServerProcess, ingested: dict[str, Any], corpus: Path
    ) -> None:
        """Every frame of every file pydicom decodes comes back equal from GetFrames."""
        manifest = {r["file"]: r for r in csv.DictReader(open(corpus / "MANIFEST.csv"))}
        client = server.client()
        compared = 0
        for path in ingested["files"]:
            result = ingested["results"][path.name]
            if result.outcome != archive_pb2.STORED:
                continue
            reference = _reference_frames(path)
            if reference is None:
                continue
            got = list(client.frames(result.sop_instance_uid, [], decode=True))
            assert len(got) == len(reference), path.name
            for number, pixel, data in got:
                arr = np.frombuffer(data, dtype=pixel.dtype).reshape(tuple(pixel.shape))
                assert np.array_equal(arr, reference[number - 1]), (
                    f"{path.name} frame {number}"
                )
            compared += 1
        decodable = [
            f for f, row in manifest.items() if row["pydicom_decodes"].startswith("yes")
        ]
        assert compared >= len(decodable) - 8  # files sharing a UID are compared once

    def test_stored_frames_are_original_bitstreams(
        self, server: ServerProcess, ingested: dict[str, Any], corpus: Path
    ) -> None:
        """Frames as stored are the exact compressed bitstreams of the file."""
        path = corpus / "xa_multiframe_96frames_jpeg_bot.dcm"
        ds = pydicom.dcmread(path)
        expected = list(
            pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=96)
        )
        uid = ingested["results"][path.name].sop_instance_uid
        got = {
            n: data
            for n, _pixel, data in server.client().frames(uid, [1, 48, 96], False)
        }
        assert got == {1: expected[0], 48: expected[47], 96: expected[95]}

    def test_native_big_endian_frames_come_back_little_endian(
        self, server: ServerProcess, ingested: dict[str, Any], corpus: Path
    ) -> None:
        """A big-endian file's stored frames are the same values in little-endian."""
        path = corpus / "mr_enhanced_small_big_endian.dcm"
        reference = pydicom.dcmread(path).pixel_array
        uid = ingested["results"][path.name].sop_instance_uid
        for number, pixel, data in server.client().frames(uid, [2, 10], False):
            assert pixel.transfer_syntax_uid == ExplicitVRLittleEndian
            arr = np.frombuffer(data, dtype=pixel.dtype).reshape(tuple(pixel.shape))
            assert np.array_equal(arr, reference[number - 1])
