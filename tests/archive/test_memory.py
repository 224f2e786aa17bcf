"""Server memory while a 640 MiB multi-frame instance is stored and retrieved.

The instance is written to disk frame by frame, never held whole by the test
either, so the only large process in the picture is the server under test.
Its resident memory is sampled every 50 ms while the instance streams in and
out; ``archive/service.py`` promises that no instance is held whole.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    generate_uid,
)

from dicomvault.proto import archive_pb2
from dicomvault.tools.client import Client
from tests.server import ServerProcess

ROWS = COLUMNS = 1024
FRAMES = 320
FRAME_BYTES = ROWS * COLUMNS * 2
# The server may grow by working buffers (a shard of frames is 32 MiB raw),
# never by anything proportional to the 640 MiB instance.
RSS_LIMIT = 200_000_000
SAMPLE_SECONDS = 0.05
SEED = 600


@dataclass(frozen=True, slots=True)
class LargeInstance:
    """A multi-frame file on disk and what the test knows about it."""

    path: Path
    sop_instance_uid: str
    sha256: str
    size: int
    pixel_offset: int

    def frame_bytes(self, number: int) -> bytes:
        """Frame ``number`` (1-based) as it lies in the file."""
        with open(self.path, "rb") as fh:
            fh.seek(self.pixel_offset + (number - 1) * FRAME_BYTES)
            return fh.read(FRAME_BYTES)


def write_large_instance(path: Path, frames: int, seed: int) -> LargeInstance:
    """Write a native 16-bit multi-frame file frame by frame, hashing as it goes.

    pydicom writes everything but the pixels; the Pixel Data element header
    (explicit VR little endian: tag, ``OW``, two reserved bytes, 4-byte
    length) and the frames are appended by hand, so no more than one frame
    is ever in memory.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "MEMORY-SYN"
    ds.PatientName = "Synthetic^Large"
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    pydicom.dcmwrite(path, ds, enforce_file_format=True)

    digest = hashlib.sha256(path.read_bytes())
    pixel_offset = path.stat().st_size + 12
    header = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OW", frames * FRAME_BYTES)
    rng = np.random.default_rng(seed)
    # A smooth field (compresses well) under low-order noise (does not).
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    field = 1500 + 900 * np.sin(x / 97.0) * np.cos(y / 131.0)
    with open(path, "ab") as fh:
        fh.write(header)
        digest.update(header)
        for number in range(frames):
            drift = 300 * np.sin(number / 17.0)
            noise = rng.integers(0, 64, (ROWS, COLUMNS))
            frame = np.clip(field + drift + noise, 0, 4095).astype("<u2").tobytes()
            fh.write(frame)
            digest.update(frame)
    return LargeInstance(path, ds.SOPInstanceUID, digest.hexdigest(),
                         path.stat().st_size, pixel_offset)


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file, read in pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class RssSampler:
    """Samples a server's resident memory in a background thread; keeps the peak."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.peak = server.rss_bytes()
        self.samples = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, self.server.rss_bytes())
            self.samples += 1

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_bytes())


@dataclass(frozen=True, slots=True)
class StoreRun:
    """The store of the large instance, as the client and the sampler saw it."""

    result: archive_pb2.StoreResult
    baseline: int
    peak: int
    seconds: float


def growth(baseline: int, peak: int) -> str:
    return f"peak RSS {peak >> 20} MiB, baseline {baseline >> 20} MiB, " \
           f"growth {(peak - baseline) >> 20} MiB (limit {RSS_LIMIT >> 20} MiB)"


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> LargeInstance:
    """The 640 MiB instance, written once for the module."""
    path = tmp_path_factory.mktemp("large") / "large-multiframe.dcm"
    return write_large_instance(path, FRAMES, SEED)


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[Client]:
    client = server.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def stored(server: ServerProcess, client: Client, large: LargeInstance) -> StoreRun:
    """Store the large instance while sampling the server's memory."""
    baseline = server.rss_bytes()
    started = time.monotonic()
    with RssSampler(server) as sampler:
        (result,) = client.store([large.path])
    seconds = time.monotonic() - started
    print(f"store: {large.size >> 20} MiB in {seconds:.1f} s, "
          f"{growth(baseline, sampler.peak)}, {sampler.samples} samples")
    return StoreRun(result, baseline, sampler.peak, seconds)


class TestLargeInstanceMemory:
    """A 640 MiB instance streams in and out without the server holding it."""

    def test_storing_it_keeps_server_rss_within_200_mb_of_baseline(
        self, large: LargeInstance, stored: StoreRun
    ) -> None:
        """Store answers STORED with the file's sha256; RSS grows < 200 MB."""
        assert large.size > 600 << 20
        assert stored.result.outcome == archive_pb2.STORED, stored.result.reason
        assert stored.result.sha256 == large.sha256
        assert stored.result.size == large.size
        assert stored.peak - stored.baseline < RSS_LIMIT, growth(stored.baseline,
                                                                  stored.peak)

    def test_retrieving_it_is_bit_exact_and_keeps_server_rss_within_200_mb(
        self, server: ServerProcess, client: Client, large: LargeInstance,
        stored: StoreRun, tmp_path: Path,
    ) -> None:
        """Retrieve rebuilds the original sha256; RSS stays < 200 MB over baseline."""
        out = tmp_path / "retrieved.dcm"
        started = time.monotonic()
        with RssSampler(server) as sampler:
            info = client.retrieve(large.sop_instance_uid, out)
        seconds = time.monotonic() - started
        found = sha256_file(out)
        out.unlink()
        print(f"retrieve: {large.size >> 20} MiB in {seconds:.1f} s, "
              f"{growth(stored.baseline, sampler.peak)}, {sampler.samples} samples")

        assert info.number_of_frames == FRAMES
        assert found == large.sha256
        assert sampler.peak - stored.baseline < RSS_LIMIT, growth(stored.baseline,
                                                                   sampler.peak)

    def test_first_and_last_raw_frames_equal_the_bytes_at_their_file_offsets(
        self, client: Client, large: LargeInstance, stored: StoreRun
    ) -> None:
        """GetFrames without decoding returns frames 1 and N exactly as in the file."""
        frames = {
            number: (pixel, data)
            for number, pixel, data in client.frames(
                large.sop_instance_uid, [1, FRAMES], decode=False)
        }

        assert sorted(frames) == [1, FRAMES]
        for number, (pixel, data) in frames.items():
            assert (pixel.rows, pixel.columns) == (ROWS, COLUMNS)
            assert (pixel.bits_allocated, pixel.dtype) == (16, "<u2")
            assert data == large.frame_bytes(number), f"frame {number} differs"
        assert frames[1][1] != frames[FRAMES][1]
