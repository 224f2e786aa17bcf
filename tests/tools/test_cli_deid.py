"""``dicomvault deid`` and the Admin.DeidentifyStudy RPC against a live server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pydicom
import pytest

from dicomvault.proto import deid_pb2
from tests.server import ServerProcess, corpus_dir

DICOMVAULT = Path(sys.executable).parent / "dicomvault"
US_FILE = "us_jpegll_8bit.dcm"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("deid") / "data") as proc:
        yield proc


def _deid(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(DICOMVAULT), "deid", *args, "--server", server.address]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _some_files(prefix: str, count: int) -> list[Path]:
    return sorted(p for p in corpus_dir().glob(f"{prefix}*.dcm"))[:count]


class TestDeidCommand:
    """The command writes a copy to a folder and reports burned-in text."""

    def test_study_is_copied_with_new_uids_and_the_same_pixels(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """Every instance of the study lands in the folder, de-identified."""
        files = _some_files("mr_brain", 2)
        server.client().store(files)
        headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
        study = headers[0].StudyInstanceUID
        in_study = {h.SOPInstanceUID for h in headers if h.StudyInstanceUID == study}
        target = tmp_path / "research"

        done = _deid(server, "--study", study, "--to", target.as_uri())

        assert done.returncode == 0, done.stderr
        written = sorted(target.rglob("*.dcm"))
        assert len(written) == len(in_study)
        assert "instance(s) written" in done.stdout
        copy = pydicom.dcmread(written[0])
        assert copy.StudyInstanceUID != study
        assert str(copy.PatientName) == ""
        pixels = {pydicom.dcmread(p).PixelData for p in files}
        assert copy.PixelData in pixels

    def test_ultrasound_is_reported_as_possibly_burned_in(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """A US instance is written and named in the burned-in report."""
        path = corpus_dir() / US_FILE
        server.client().store([path])
        study = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID

        done = _deid(server, "--study", study, "--to", (tmp_path / "r").as_uri())

        assert done.returncode == 0, done.stderr
        assert "burned-in text possible" in done.stdout
        assert "modality US" in done.stdout

    def test_unknown_study_is_not_found_over_grpc(self, server: ServerProcess) -> None:
        """The RPC answers NOT_FOUND for a study with no instance."""
        client = server.client()

        with pytest.raises(grpc.RpcError) as caught:
            client.admin.DeidentifyStudy(
                deid_pb2.DeidentifyStudyRequest(study_uid="1.2.3", to="hot")
            )

        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no stored instance has Study Instance UID 1.2.3" in (
            caught.value.details()
        )

    def test_bad_target_and_profile_are_invalid_arguments(
        self, server: ServerProcess
    ) -> None:
        """An unknown --to or profile is INVALID_ARGUMENT naming the choices."""
        client = server.client()

        with pytest.raises(grpc.RpcError) as caught:
            client.admin.DeidentifyStudy(
                deid_pb2.DeidentifyStudyRequest(study_uid="1.2.3", to="nowhere")
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is neither a configured tier (hot, warm, cold) nor a URL" in (
            caught.value.details()
        )
        with pytest.raises(grpc.RpcError) as caught:
            client.admin.DeidentifyStudy(
                deid_pb2.DeidentifyStudyRequest(
                    study_uid="1.2.3", to="hot", profile="full"
                )
            )
        assert "profile 'full' is not supported" in caught.value.details()
