"""Bad uploads get a clear reason, store nothing, and leave the server serving."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomvault.proto import archive_pb2
from dicomvault.tools.client import Client
from tests.server import ServerProcess


def _dataset(**overrides: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BAD-INPUT"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = 16, 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(16 * 16 * 2)
    for key, value in overrides.items():
        setattr(ds, key, value)
    return ds


def _bytes(
    ds: Dataset, tmp_path: Path, name: str = "x.dcm", enforce: bool = True
) -> bytes:
    path = tmp_path / name
    # Bad UIDs are the point of some tests: let pydicom write them.
    mode = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        ds.save_as(path, enforce_file_format=enforce)
    finally:
        pydicom.config.settings.writing_validation_mode = mode
    return path.read_bytes()


def _messages(
    data: bytes, *, size: int | None = None, end: bool = True, chunk: int = 4096
) -> Iterator[archive_pb2.StoreRequest]:
    yield archive_pb2.StoreRequest(
        start=archive_pb2.StoreStart(
            label="upload", size=len(data) if size is None else size
        )
    )
    for i in range(0, len(data), chunk):
        yield archive_pb2.StoreRequest(chunk=data[i : i + chunk])
    if end:
        yield archive_pb2.StoreRequest(end=archive_pb2.StoreEnd())


def _objects(server: ServerProcess) -> set[Path]:
    root = server.data_dir / "tiers"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _count(client: Client) -> int:
    return int(client.sql("select count(*) from instances")[1][0][0])


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[Client]:
    c = server.client()
    yield c
    c.close()


class TestBadInput:
    def _store_rejected(
        self,
        server: ServerProcess,
        client: Client,
        messages: Iterator[archive_pb2.StoreRequest],
    ) -> str:
        before_objects, before_count = _objects(server), _count(client)
        results = client.archive.Store(messages).results
        assert len(results) == 1
        assert results[0].outcome == archive_pb2.REJECTED
        assert _objects(server) == before_objects, "a rejected upload left objects"
        assert _count(client) == before_count
        # The server still serves after the bad input.
        assert client.search(archive_pb2.STUDY, {}) is not None
        return str(results[0].reason)

    def test_not_dicom_is_rejected_and_changes_nothing(self, server, client) -> None:
        """Plain text is refused as not DICOM."""
        reason = self._store_rejected(
            server, client, _messages(b"hello, not an image\n" * 50)
        )
        assert reason.startswith("not a DICOM file: no 'DICM' marker at byte 128")

    def test_truncated_file_is_rejected_and_changes_nothing(
        self, server, client, tmp_path
    ) -> None:
        """A file cut inside its pixel data is refused as truncated."""
        data = _bytes(_dataset(), tmp_path)
        reason = self._store_rejected(server, client, _messages(data[:-200]))
        assert (
            reason == "pixel data claims 512 bytes but only 312 remain in the file "
            "(truncated upload?)"
        )

    def test_truncated_encapsulated_file_is_rejected(
        self, server, client, corpus
    ) -> None:
        """A JPEG file cut inside a fragment is refused."""
        data = (corpus / "xa_multiframe_96frames_jpeg_bot.dcm").read_bytes()
        reason = self._store_rejected(server, client, _messages(data[: len(data) // 2]))
        assert "truncated upload?" in reason

    def test_pixel_length_mismatch_is_rejected(self, server, client, tmp_path) -> None:
        """Pixel data shorter than rows x columns x samples x frames is refused."""
        data = _bytes(_dataset(PixelData=bytes(100)), tmp_path)
        reason = self._store_rejected(server, client, _messages(data))
        assert reason == (
            "pixel data length 100 does not match 16 rows x 16 columns x 1 "
            "samples x 16 bits x 1 frames = 512 bytes"
        )

    def test_missing_sop_instance_uid_is_rejected(
        self, server, client, tmp_path
    ) -> None:
        """An instance with no SOP Instance UID anywhere is refused."""
        ds = _dataset()
        del ds.SOPInstanceUID
        del ds.file_meta.MediaStorageSOPInstanceUID
        data = _bytes(ds, tmp_path, enforce=False)
        reason = self._store_rejected(server, client, _messages(data))
        assert reason.startswith("no SOP Instance UID (0008,0018)")

    @pytest.mark.parametrize(
        "uid", ["../../../etc/passwd", "1.2/3.4", "1.2\x003", "..", "1.2.3 4"]
    )
    def test_uid_that_could_escape_a_path_is_rejected(
        self, server, client, tmp_path, uid
    ) -> None:
        """UIDs with '../', '/', NUL or spaces inside are refused before any write."""
        ds = _dataset()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        reason = self._store_rejected(server, client, _messages(_bytes(ds, tmp_path)))
        assert "is not a valid UID: a UID is digits and dots" in reason
        assert not list(server.data_dir.parent.glob("etc*"))

    @pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID"])
    def test_unsafe_study_or_series_uid_is_rejected(
        self, server, client, tmp_path, keyword
    ) -> None:
        """Study and series UIDs are checked as strictly as the SOP Instance UID."""
        reason = self._store_rejected(
            server, client, _messages(_bytes(_dataset(**{keyword: "../x"}), tmp_path))
        )
        assert reason.startswith(f"{keyword} '../x' is not a valid UID")

    def test_empty_upload_is_rejected(self, server, client) -> None:
        """An upload of zero bytes is refused."""
        reason = self._store_rejected(server, client, _messages(b""))
        assert reason == "empty upload: 0 bytes received"

    def test_upload_shorter_than_declared_is_rejected(
        self, server, client, tmp_path
    ) -> None:
        """Fewer bytes than the declared size is a truncated upload."""
        data = _bytes(_dataset(), tmp_path)
        reason = self._store_rejected(
            server, client, _messages(data[:300], size=len(data))
        )
        assert reason == f"truncated upload: 300 of {len(data)} declared bytes arrived"

    def test_stream_ending_without_end_message_is_rejected(
        self, server, client, tmp_path
    ) -> None:
        """A stream cut off after some chunks stores nothing."""
        data = _bytes(_dataset(), tmp_path)
        reason = self._store_rejected(
            server, client, _messages(data[:600], size=len(data), end=False)
        )
        assert reason == (
            f"truncated upload: 600 of {len(data)} declared bytes arrived "
            "before the upload ended"
        )

    def test_cancelled_stream_stores_nothing_and_server_keeps_serving(
        self, server, client, tmp_path
    ) -> None:
        """A client that cancels mid-upload leaves no instance, objects or spool."""
        data = _bytes(_dataset(), tmp_path)
        before_objects, before_count = _objects(server), _count(client)
        sent = threading.Event()

        def slow() -> Iterator[archive_pb2.StoreRequest]:
            yield archive_pb2.StoreRequest(
                start=archive_pb2.StoreStart(label="x", size=len(data))
            )
            yield archive_pb2.StoreRequest(chunk=data[:100])
            sent.set()
            time.sleep(30)
            yield archive_pb2.StoreRequest(chunk=data[100:])

        future = client.archive.Store.future(slow())
        assert sent.wait(10)
        time.sleep(0.5)
        future.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
        deadline = time.monotonic() + 10
        while (
            list((server.data_dir / "spool").iterdir()) and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert not list((server.data_dir / "spool").iterdir())
        assert _objects(server) == before_objects
        assert _count(client) == before_count

    def test_good_instance_after_bad_ones_in_one_stream_is_stored(
        self, server, client, tmp_path
    ) -> None:
        """One bad file in a stream does not stop the next one."""
        good = _dataset()

        def stream() -> Iterator[archive_pb2.StoreRequest]:
            yield from _messages(b"garbage" * 20)
            yield from _messages(_bytes(good, tmp_path, "good.dcm"))

        results = client.archive.Store(stream()).results
        assert [r.outcome for r in results] == [
            archive_pb2.REJECTED,
            archive_pb2.STORED,
        ]
        assert results[1].sop_instance_uid == good.SOPInstanceUID
