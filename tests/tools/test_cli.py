"""The ``dicomvault`` command, run as a subprocess against a live server.

Every test calls the installed console script, as a user would, and checks its
output, its exit code and what it wrote. One server per module holds a small
folder of real corpus files; tests that store other files or damage stored
data use a second server, so the first one's counts stay known.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pydicom
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian

from tests.server import ServerProcess, corpus_dir, free_port

DICOMVAULT = Path(sys.executable).parent / "dicomvault"

# Corpus files of the ingest folder, by the sub-folder they are copied to; the
# nesting checks that ingest walks folders recursively.
LAYOUT = {
    "mr_brain_siemens_trio_implicit_le.dcm": ".",
    "ct_wg04_ct1_explicit_be.dcm": ".",
    "dicomdir_media_directory.dcm": ".",
    "mr_brain_siemens_trio_j2k_lossless.dcm": "encapsulated",
    "mr_brain_siemens_trio_jpegls_lossless.dcm": "encapsulated/jpegls",
    "mr_brain_canon_enhanced_520frames.dcm": "multiframe",
    "xa_multiframe_96frames_jpeg_bot.dcm": "multiframe",
}
SERIES_FOLDER = "series_mr_brain_ge_t1_mprage"
SERIES_SLICES = 4
NOT_DICOM = "notes.txt"

NATIVE = "mr_brain_siemens_trio_implicit_le.dcm"
BIG_ENDIAN = "ct_wg04_ct1_explicit_be.dcm"
J2K = "mr_brain_siemens_trio_j2k_lossless.dcm"
JPEG_LS = "mr_brain_siemens_trio_jpegls_lossless.dcm"
MULTIFRAME_NATIVE = "mr_brain_canon_enhanced_520frames.dcm"
MULTIFRAME_JPEG = "xa_multiframe_96frames_jpeg_bot.dcm"

DICOMDIR_REASON = (
    "a DICOMDIR (Media Storage Directory) is an index of a file set, not an "
    "instance; store the files it lists instead"
)
NOT_DICOM_REASON = "not a DICOM file"


def dicomvault(
    command: str,
    *args: str | Path,
    server: ServerProcess | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``dicomvault COMMAND ARGS [--server ADDRESS]`` and capture its output."""
    argv = [str(DICOMVAULT), command, *(str(a) for a in args)]
    if server is not None:
        argv += ["--server", server.address]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sql_json(server: ServerProcess, statement: str) -> list[dict[str, object]]:
    run = dicomvault("sql", statement, "--format", "json", server=server)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


@dataclass(frozen=True, slots=True)
class Ingested:
    """The module's ingest folder and what the first ingest of it printed."""

    folder: Path
    dicom: dict[str, Path]  # storable files by name
    rejected: dict[str, Path]  # DICOMDIR and text file by name
    headers: dict[str, pydicom.Dataset]  # storable files' headers by name
    first: subprocess.CompletedProcess[str]

    def uid(self, name: str) -> str:
        return str(self.headers[name].SOPInstanceUID)

    def distinct(self, keyword: str) -> set[str]:
        return {str(ds.get(keyword, "")) for ds in self.headers.values()}


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> Path:
    path = corpus_dir()
    if not (path / "MANIFEST.csv").exists():
        pytest.fail(f"the shared corpus is missing at {path}")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One live server for the module; only ``ingested`` adds data to it."""
    with ServerProcess(tmp_path_factory.mktemp("cli-srv") / "data") as proc:
        yield proc


@pytest.fixture(scope="module")
def scratch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A second server, so that new and damaged files stay out of ``server``.

    Each test using it stores a file of its own and looks only at that file.
    """
    with ServerProcess(tmp_path_factory.mktemp("cli-scratch") / "data") as proc:
        yield proc


@pytest.fixture(scope="module")
def ingested(
    server: ServerProcess, corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Ingested:
    """A nested folder of corpus files plus a text file, ingested once by the CLI."""
    folder = tmp_path_factory.mktemp("cli-input")
    dicom: dict[str, Path] = {}
    for name, sub in LAYOUT.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        dicom[name] = Path(shutil.copy2(corpus / name, folder / sub / name))
    for source in sorted((corpus / SERIES_FOLDER).glob("*.dcm"))[:SERIES_SLICES]:
        target = folder / "series" / "ge" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        dicom[source.name] = Path(shutil.copy2(source, target))
    (folder / "encapsulated" / NOT_DICOM).write_text("reading notes, not an image\n")

    dicomdir = dicom.pop("dicomdir_media_directory.dcm")
    rejected = {dicomdir.name: dicomdir, NOT_DICOM: folder / "encapsulated" / NOT_DICOM}
    with warnings.catch_warnings():
        # The GE slices hold an SH value longer than 16 characters; pydicom
        # reads it and warns, which says nothing about the CLI.
        warnings.filterwarnings("ignore", "The value length", UserWarning)
        headers = {
            name: pydicom.dcmread(path, stop_before_pixels=True)
            for name, path in dicom.items()
        }
    uids = [ds.SOPInstanceUID for ds in headers.values()]
    assert len(set(uids)) == len(uids), "the ingest folder needs distinct SOP UIDs"
    first = dicomvault("ingest", folder, server=server)
    return Ingested(folder, dicom, rejected, headers, first)


@pytest.fixture(scope="module")
def xa_pixels(corpus: Path) -> np.ndarray:
    """pydicom's decoding of every frame of the multi-frame JPEG file."""
    return np.asarray(pydicom.dcmread(corpus / MULTIFRAME_JPEG).pixel_array)


def _object_key(data_dir: Path, sop_instance_uid: str, name: str) -> Path:
    """The one file ``name`` of an instance under the hot tier of ``data_dir``."""
    hot = data_dir / "tiers" / "hot"
    found = list((hot / "studies").glob(f"*/*/{sop_instance_uid}/*/{name}"))
    assert len(found) == 1, found
    return found[0]


def _wait_until_serving(proc: subprocess.Popen[str], address: str) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the server exited before it was ready"
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"the server at {address} did not become ready in 60 s")


# --- ingest -------------------------------------------------------------------


class TestIngest:
    def test_folder_is_ingested_recursively_and_summarised(
        self, ingested: Ingested
    ) -> None:
        """Every file below the folder is stored or rejected, and counted once."""
        lines = ingested.first.stdout.splitlines()
        assert lines[0] == f"stored {len(ingested.dicom)}, duplicate 0, rejected 2"
        assert ingested.first.stderr == ""

    def test_each_rejected_file_is_listed_with_its_reason(
        self, ingested: Ingested
    ) -> None:
        """The DICOMDIR and the text file each get a line naming the file and why."""
        lines = ingested.first.stdout.splitlines()[1:]
        dicomdir = ingested.rejected["dicomdir_media_directory.dcm"]
        text = ingested.rejected[NOT_DICOM]
        assert f"  rejected {dicomdir}: {DICOMDIR_REASON}" in lines
        assert any(
            line.startswith(f"  rejected {text}: {NOT_DICOM_REASON}") for line in lines
        ), lines
        assert len(lines) == 2

    def test_any_rejected_file_makes_the_exit_code_1(self, ingested: Ingested) -> None:
        """Exit code 1 tells a script that at least one file was not stored."""
        assert ingested.first.returncode == 1

    def test_same_files_again_are_duplicates_and_exit_0(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """Ingesting the stored files again changes nothing and reports duplicates."""
        run = dicomvault("ingest", *ingested.dicom.values(), server=server)
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"stored 0, duplicate {len(ingested.dicom)}, rejected 0\n"

    def test_same_folder_again_reports_duplicates_and_the_same_rejects(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """A second ingest of the folder stores nothing and still exits 1."""
        run = dicomvault("ingest", ingested.folder, server=server)
        assert run.returncode == 1
        assert run.stdout.splitlines()[0] == (
            f"stored 0, duplicate {len(ingested.dicom)}, rejected 2"
        )

    def test_json_prints_one_object_per_file_with_outcome_and_reason(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """--json gives one parsable line per file and no summary."""
        run = dicomvault("ingest", "--json", ingested.folder, server=server)
        assert run.returncode == 1
        results = {
            Path(r["file"]).name: r for r in map(json.loads, run.stdout.splitlines())
        }
        assert len(results) == len(run.stdout.splitlines())
        assert set(results) == set(ingested.dicom) | set(ingested.rejected)
        for name, path in ingested.dicom.items():
            assert results[name]["outcome"] == "duplicate"
            assert results[name]["reason"].startswith("identical to stored version")
            assert results[name]["sha256"] == sha256(path)
            assert results[name]["sop_instance_uid"] == ingested.uid(name)
        assert results["dicomdir_media_directory.dcm"]["outcome"] == "rejected"
        assert results["dicomdir_media_directory.dcm"]["reason"] == DICOMDIR_REASON
        assert results[NOT_DICOM]["outcome"] == "rejected"
        assert results[NOT_DICOM]["reason"].startswith(NOT_DICOM_REASON)

    def test_json_reports_a_new_file_as_stored_with_checksum_and_exits_0(
        self, scratch_server: ServerProcess, corpus: Path
    ) -> None:
        """A file not stored before comes back as ``stored`` with size and SHA-256."""
        path = corpus / "mr_wg04_small_trailing_padding.dcm"
        run = dicomvault("ingest", "--json", path, server=scratch_server)
        assert run.returncode == 0, run.stderr
        (line,) = run.stdout.splitlines()
        result = json.loads(line)
        assert result["file"] == str(path)
        assert result["outcome"] == "stored"
        assert result["reason"] == ""
        assert result["sha256"] == sha256(path)
        assert result["size"] == path.stat().st_size

    def test_missing_path_exits_2_and_names_it(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """A path that does not exist stops ingest before anything is sent."""
        missing = tmp_path / "nowhere.dcm"
        run = dicomvault("ingest", missing, server=server)
        assert run.returncode == 2
        assert run.stderr == f"error: no such file: {missing}\n"


# --- get ----------------------------------------------------------------------


class TestGet:
    @pytest.mark.parametrize("name", [NATIVE, BIG_ENDIAN, J2K, JPEG_LS])
    def test_instance_is_written_bit_exact(
        self, server: ServerProcess, ingested: Ingested, tmp_path: Path, name: str
    ) -> None:
        """The retrieved file has the same SHA-256 as the file that was ingested."""
        out = tmp_path / "out.dcm"
        run = dicomvault("get", ingested.uid(name), "-o", out, server=server)
        assert run.returncode == 0, run.stderr
        source = ingested.dicom[name]
        assert sha256(out) == sha256(source)
        assert run.stdout == (
            f"{out}: {source.stat().st_size} bytes, sha256 {sha256(source)}\n"
        )

    def test_unknown_uid_exits_1_with_not_found_and_writes_nothing(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """A UID that is not stored is NOT_FOUND; no file or partial file is left."""
        run = dicomvault(
            "get", "1.2.3.4.5.6.7.8.9", "-o", tmp_path / "x.dcm", server=server
        )
        assert run.returncode == 1
        assert run.stderr == (
            "error: NOT_FOUND: no instance with SOP Instance UID 1.2.3.4.5.6.7.8.9\n"
        )
        assert list(tmp_path.iterdir()) == []

    def test_path_like_uid_is_invalid_argument(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """``../etc`` is refused as an invalid UID, never used as a path."""
        run = dicomvault("get", "../etc", "-o", tmp_path / "x.dcm", server=server)
        assert run.returncode == 1
        assert run.stderr.startswith(
            "error: INVALID_ARGUMENT: SOPInstanceUID '../etc' is not a valid UID"
        )
        assert list(tmp_path.iterdir()) == []

    def test_unreachable_server_exits_1_naming_the_address(
        self, tmp_path: Path
    ) -> None:
        """With no server listening the error says which address was tried."""
        address = f"127.0.0.1:{free_port()}"
        run = dicomvault("get", "1.2.3", "-o", tmp_path / "x.dcm", "--server", address)
        assert run.returncode == 1
        assert run.stderr.startswith(f"error: cannot reach the server at {address}: ")


# --- frames -------------------------------------------------------------------

FRAME_LINE = re.compile(
    r"^frame (?P<number>\d+): (?P<geometry>\d+x\d+x\d+) shape=(?P<shape>\S+( \S+)*?) "
    r"dtype=(?P<dtype>\S+) transfer_syntax=(?P<ts>[\d.]+) bytes=(?P<bytes>\d+) "
    r"-> (?P<path>.+)$"
)


class TestFrames:
    def test_frame_list_writes_exactly_those_frames_and_describes_each(
        self, server: ServerProcess, ingested: Ingested, tmp_path: Path
    ) -> None:
        """``--frames 1,3-5`` writes four raw files and prints one line for each."""
        run = dicomvault(
            "frames",
            ingested.uid(MULTIFRAME_NATIVE),
            "--frames",
            "1,3-5",
            "-o",
            tmp_path,
            server=server,
        )
        assert run.returncode == 0, run.stderr
        names = [
            "frame_00001.raw",
            "frame_00003.raw",
            "frame_00004.raw",
            "frame_00005.raw",
        ]
        assert sorted(p.name for p in tmp_path.iterdir()) == names
        lines = [FRAME_LINE.match(line) for line in run.stdout.splitlines()]
        assert all(lines), run.stdout
        assert [int(m["number"]) for m in lines] == [1, 3, 4, 5]
        for match, name in zip(lines, names, strict=True):
            assert match["geometry"] == "80x80x1"
            assert match["shape"] == "[80, 80]"
            assert match["dtype"] == "<i2"
            assert match["ts"] == ExplicitVRLittleEndian
            assert match["bytes"] == str(80 * 80 * 2)
            assert match["path"] == str(tmp_path / name)

    def test_raw_native_frames_equal_the_files_pixel_bytes(
        self, server: ServerProcess, ingested: Ingested, tmp_path: Path
    ) -> None:
        """A stored native little-endian frame is the file's bytes for that frame."""
        source = ingested.dicom[MULTIFRAME_NATIVE]
        run = dicomvault(
            "frames",
            ingested.uid(MULTIFRAME_NATIVE),
            "--frames",
            "1,260,520",
            "-o",
            tmp_path,
            server=server,
        )
        assert run.returncode == 0, run.stderr
        pixel_data = pydicom.dcmread(source).PixelData
        frame_bytes = 80 * 80 * 2
        for number in (1, 260, 520):
            expected = pixel_data[(number - 1) * frame_bytes : number * frame_bytes]
            assert (tmp_path / f"frame_{number:05d}.raw").read_bytes() == expected

    def test_encapsulated_frames_are_written_as_original_bitstreams(
        self, server: ServerProcess, ingested: Ingested, tmp_path: Path
    ) -> None:
        """Without --decode a JPEG frame is its compressed bitstream in a .bin file."""
        run = dicomvault(
            "frames",
            ingested.uid(MULTIFRAME_JPEG),
            "--frames",
            "2,96",
            "-o",
            tmp_path,
            server=server,
        )
        assert run.returncode == 0, run.stderr
        ds = pydicom.dcmread(ingested.dicom[MULTIFRAME_JPEG])
        expected = list(generate_frames(ds.PixelData, number_of_frames=96))
        assert (tmp_path / "frame_00002.bin").read_bytes() == expected[1]
        assert (tmp_path / "frame_00096.bin").read_bytes() == expected[95]
        first = FRAME_LINE.match(run.stdout.splitlines()[0])
        assert first is not None
        assert (first["shape"], first["dtype"]) == ("-", "-")
        assert first["ts"] == ds.file_meta.TransferSyntaxUID

    def test_decode_writes_arrays_equal_to_pydicom(
        self,
        server: ServerProcess,
        ingested: Ingested,
        tmp_path: Path,
        xa_pixels: np.ndarray,
    ) -> None:
        """--decode writes .npy arrays equal to ``dcmread(...).pixel_array[i]``."""
        run = dicomvault(
            "frames",
            ingested.uid(MULTIFRAME_JPEG),
            "--frames",
            "1,3-5",
            "--decode",
            "-o",
            tmp_path,
            server=server,
        )
        assert run.returncode == 0, run.stderr
        assert len(run.stdout.splitlines()) == 4
        for number in (1, 3, 4, 5):
            array = np.load(tmp_path / f"frame_{number:05d}.npy")
            assert array.dtype == xa_pixels.dtype
            assert np.array_equal(array, xa_pixels[number - 1]), number

    def test_decode_of_native_frames_equals_pydicom(
        self, server: ServerProcess, ingested: Ingested, tmp_path: Path
    ) -> None:
        """Decoded signed native frames keep pydicom's values and dtype."""
        run = dicomvault(
            "frames",
            ingested.uid(MULTIFRAME_NATIVE),
            "--frames",
            "7,519",
            "--decode",
            "-o",
            tmp_path,
            server=server,
        )
        assert run.returncode == 0, run.stderr
        reference = pydicom.dcmread(ingested.dicom[MULTIFRAME_NATIVE]).pixel_array
        for number in (7, 519):
            array = np.load(tmp_path / f"frame_{number:05d}.npy")
            assert array.dtype == reference.dtype
            assert np.array_equal(array, reference[number - 1])

    def test_frame_past_the_last_exits_1_with_not_found(
        self, server: ServerProcess, ingested: Ingested, tmp_path: Path
    ) -> None:
        """Asking for frame 521 of 520 names the frames that exist."""
        uid = ingested.uid(MULTIFRAME_NATIVE)
        run = dicomvault(
            "frames", uid, "--frames", "521", "-o", tmp_path, server=server
        )
        assert run.returncode == 1
        assert run.stderr == (
            f"error: NOT_FOUND: instance {uid} has frames 1-520; "
            "frame 521 does not exist\n"
        )
        assert list(tmp_path.iterdir()) == []

    def test_reversed_range_is_refused_with_an_example(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """``5-3`` is not a frame list; the message shows one that is."""
        run = dicomvault(
            "frames", "1.2.3", "--frames", "5-3", "-o", tmp_path, server=server
        )
        assert run.returncode == 1
        assert run.stderr == "error: bad frame list '5-3'; use e.g. 1,3-5\n"


# --- ls -----------------------------------------------------------------------


class TestLs:
    def test_counts_match_what_was_ingested(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """Patients, studies, series and instances equal those of the stored files."""
        run = dicomvault("ls", server=server)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        studies = ingested.distinct("StudyInstanceUID")
        assert lines[0] == (
            f"patients {len(ingested.distinct('PatientID'))}, studies {len(studies)}, "
            f"series {len(ingested.distinct('SeriesInstanceUID'))}, "
            f"instances {len(ingested.dicom)}"
        )
        listed = {line.split()[1] for line in lines[1:]}
        assert listed == studies

    def test_study_lists_its_series_with_instance_counts(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """``ls --study`` lists the one series of the GE slices and its 4 instances."""
        slice_ds = ingested.headers[
            next(n for n in ingested.headers if n.startswith("mr_brain_ge"))
        ]
        run = dicomvault("ls", "--study", slice_ds.StudyInstanceUID, server=server)
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines() == [
            f"series of study {slice_ds.StudyInstanceUID}: 1",
            f"  {slice_ds.SeriesInstanceUID}  modality=MR instances={SERIES_SLICES}",
        ]

    def test_series_lists_its_instances(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """``ls --series`` lists each SOP Instance UID with its instance number."""
        slices = {
            ds.SOPInstanceUID: ds
            for n, ds in ingested.headers.items()
            if n.startswith("mr_brain_ge")
        }
        series_uid = next(iter(slices.values())).SeriesInstanceUID
        run = dicomvault("ls", "--series", series_uid, server=server)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[0] == f"instances of series {series_uid}: {SERIES_SLICES}"
        listed = {line.split()[0]: line for line in lines[1:]}
        assert set(listed) == set(slices)
        for uid, ds in slices.items():
            assert f"number={ds.InstanceNumber} " in listed[uid]

    def test_unknown_study_lists_no_series(self, server: ServerProcess) -> None:
        """A study UID that is not stored gives an empty list, not an error."""
        run = dicomvault("ls", "--study", "1.2.3.999", server=server)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "series of study 1.2.3.999: 0\n"


# --- sql ----------------------------------------------------------------------

COUNT = "select count(*) as n from instances"


class TestSql:
    def test_table_format_shows_header_rule_rows_and_row_count(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """The default table format aligns the count under its column name."""
        run = dicomvault("sql", COUNT, server=server)
        assert run.returncode == 0, run.stderr
        count = str(len(ingested.dicom))
        width = max(len("n"), len(count))
        assert [line.rstrip() for line in run.stdout.splitlines()] == [
            "n",
            "-" * width,
            count,
            "(1 rows)",
        ]

    def test_csv_format_is_a_header_and_rows(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """--format csv parses back to the column name and the count."""
        run = dicomvault("sql", COUNT, "--format", "csv", server=server)
        assert run.returncode == 0, run.stderr
        assert list(csv.reader(run.stdout.splitlines())) == [
            ["n"],
            [str(len(ingested.dicom))],
        ]

    def test_json_format_is_one_object_per_row(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """--format json gives per-study counts equal to the ingested headers."""
        rows = sql_json(
            server,
            "select study_uid, count(*) as n from instances "
            "group by study_uid order by study_uid",
        )
        expected: dict[str, int] = {}
        for ds in ingested.headers.values():
            expected[ds.StudyInstanceUID] = expected.get(ds.StudyInstanceUID, 0) + 1
        assert rows == [{"study_uid": k, "n": v} for k, v in sorted(expected.items())]

    @pytest.mark.parametrize(
        ("statement", "kind"),
        [
            ("delete from instances", "DELETE"),
            ("drop table instances", "DROP"),
            ("update instances set tier = 'cold'", "UPDATE"),
        ],
    )
    def test_write_statement_is_refused_and_data_stays(
        self, server: ServerProcess, ingested: Ingested, statement: str, kind: str
    ) -> None:
        """The SQL interface is read-only: writes exit 1 and change nothing."""
        run = dicomvault("sql", statement, server=server)
        assert run.returncode == 1
        assert run.stdout == ""
        assert run.stderr == (
            f"error: FAILED_PRECONDITION: the SQL interface is read-only: {kind} "
            "statements are refused; only queries (SELECT, WITH, VALUES) may run\n"
        )
        assert sql_json(
            server, "select count(*) as n, max(tier) as tier from instances"
        ) == [{"n": len(ingested.dicom), "tier": "hot"}]

    def test_unknown_table_is_invalid_argument(self, server: ServerProcess) -> None:
        """A query naming a table that does not exist exits 1 with the SQL error."""
        run = dicomvault("sql", "select * from no_such_table", server=server)
        assert run.returncode == 1
        assert run.stderr.startswith("error: INVALID_ARGUMENT: SQL error: ")
        assert "no_such_table" in run.stderr


# --- index rebuild ------------------------------------------------------------

SNAPSHOT = (
    "select sop_instance_uid, series_uid, study_uid, sha256, size_bytes, "
    "number_of_frames, transfer_syntax_uid, tier, version from instances "
    "order by sop_instance_uid"
)


class TestIndexRebuild:
    def test_rebuild_reports_counts_and_queries_answer_the_same(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """After a rebuild from the tiers, SQL and ls answer as they did before."""
        before = sql_json(server, SNAPSHOT)
        ls_before = dicomvault("ls", server=server).stdout

        run = dicomvault("index", "rebuild", server=server)

        assert run.returncode == 0, run.stderr
        studies = len(ingested.distinct("StudyInstanceUID"))
        assert re.fullmatch(
            rf"index rebuilt from storage: {len(ingested.dicom)} instances, "
            rf"{studies} studies in \d+\.\d\d s\n",
            run.stdout,
        ), run.stdout
        assert sql_json(server, SNAPSHOT) == before
        assert len(before) == len(ingested.dicom)
        assert dicomvault("ls", server=server).stdout == ls_before


# --- verify -------------------------------------------------------------------


class TestVerify:
    def test_clean_archive_has_no_problems_and_exits_0(
        self, server: ServerProcess, ingested: Ingested
    ) -> None:
        """Every version of every ingested instance is re-hashed and found intact."""
        run = dicomvault("verify", server=server)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert re.fullmatch(
            rf"verified {len(ingested.dicom)} instance versions, \d+ objects, "
            r"\d+ bytes",
            lines[0],
        ), lines[0]
        assert lines[1:] == ["no problems found"]

    def test_deleted_object_is_reported_missing_and_exits_1(
        self, scratch_server: ServerProcess, corpus: Path
    ) -> None:
        """An envelope removed from the hot tier is named, with its key, as missing."""
        path = corpus / "sc_rgb_3x3_odd_length.dcm"
        assert dicomvault("ingest", path, server=scratch_server).returncode == 0
        assert dicomvault("verify", server=scratch_server).returncode == 0
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        envelope = _object_key(scratch_server.data_dir, uid, "envelope.bin")
        key = envelope.relative_to(scratch_server.data_dir / "tiers" / "hot").as_posix()

        envelope.unlink()
        run = dicomvault("verify", server=scratch_server)

        assert run.returncode == 1
        lines = run.stdout.splitlines()
        assert lines[1:] == [
            f"  missing (found) tier=hot key={key}: object is missing",
            "1 problem(s)",
        ]


# --- serve --------------------------------------------------------------------


class TestServe:
    def test_taken_port_exits_1_with_a_message(self, tmp_path: Path) -> None:
        """A port already bound by another socket stops start-up with a clear error."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            run = dicomvault(
                "serve", "--data", tmp_path / "data", "--grpc-port", str(port)
            )
        assert run.returncode == 1
        assert "Traceback" not in run.stderr
        (message,) = [
            line for line in run.stderr.splitlines() if line.startswith("error: ")
        ]
        assert message.startswith("error: the server did not start: ")
        assert f"127.0.0.1:{port}" in message
        assert message.endswith("is the port in use? choose another with --grpc-port")

    def test_unknown_config_key_exits_2_naming_the_key(self, tmp_path: Path) -> None:
        """A misspelt setting in --config is an error naming the file and the key."""
        config = tmp_path / "dicomvault.toml"
        config.write_text("[server]\ngrpc_prot = 50052\n")
        run = dicomvault("serve", "--config", config, "--data", tmp_path / "data")
        assert run.returncode == 2
        assert run.stderr == f"error: {config}: unknown setting 'server.grpc_prot'\n"
        assert not (tmp_path / "data").exists()

    def test_bad_config_value_exits_2_naming_key_and_value(
        self, tmp_path: Path
    ) -> None:
        """A port out of range names the setting, where it came from and the limit."""
        config = tmp_path / "dicomvault.toml"
        config.write_text("[server]\ngrpc_port = 70000\n")
        run = dicomvault("serve", "--config", config, "--data", tmp_path / "data")
        assert run.returncode == 2
        assert run.stderr == (
            f"error: setting server.grpc_port from {config}: 70000 "
            "must be a port number 0-65535\n"
        )

    def test_sigterm_stops_the_server_with_exit_0_and_a_log_line(
        self, tmp_path: Path
    ) -> None:
        """SIGTERM ends ``serve`` cleanly: exit code 0 and ``event=server.stopped``."""
        address = f"127.0.0.1:{free_port()}"
        proc = subprocess.Popen(
            [
                str(DICOMVAULT),
                "serve",
                "--data",
                str(tmp_path / "data"),
                "--grpc-port",
                address.rsplit(":", 1)[1],
                "--http-port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_until_serving(proc, address)
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        assert f"dicomvault is serving gRPC on {address}" in stdout
        assert f"event=server.started address={address}" in stderr
        assert re.search(
            rf"event=server\.stopped address={re.escape(address)}$",
            stderr,
            re.MULTILINE,
        ), stderr
