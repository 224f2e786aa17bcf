"""Crash safety of ingest: kill -9 a live server mid-ingest, restart, check.

One scenario runs per module: a client thread stores a pool of real and
synthetic instances, one upload stream each, while the test kills the server
process with SIGKILL at seeded random moments and starts it again on the same
data folder. Every observation is collected once the last restart is done;
each test then checks one promise of ``archive/ingest.py``: an acknowledged
instance is durable, and no interrupted write is ever visible.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    generate_uid,
)

from dicomvault.archive.manifest import ENVELOPE_NAME
from dicomvault.proto import admin_pb2, archive_pb2
from dicomvault.tools.client import Client, upload_messages
from tests.server import ServerProcess

SEED = 1729
# Where each kill aims, in order. "upload": any moment, which is mostly
# mid-upload or mid-dissection since that is where the time goes; "staging":
# a few ms into staging frames and envelope in the spool, before anything
# reaches the tier; "writing": a few ms after staging, while the write intent
# is open and objects land in the tier, up to the catalog commit and the
# metadata index update.
KILL_MOMENTS = ("writing", "upload", "staging", "upload", "writing")
# Seconds between a restart (server answering) and the next kill; long
# enough for a few uploads, short enough that every kill finds ingest busy.
KILL_DELAY = (0.4, 3.5)
# Staging, and the write after it, each take 10 to 100 ms per instance of
# the pool, depending on its size and the machine's load.
WRITE_SPAN = 0.02
SYNTHETIC_INSTANCES = 150
# Retries of one file; a kill costs one or two, a server that keeps failing
# without being killed is a failure of its own.
MAX_ATTEMPTS = 12
ACKNOWLEDGED = (archive_pb2.STORED, archive_pb2.DUPLICATE)
SOP_INSTANCE_UID_TAG = "00080018"


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file, read in pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sop_instance_uid_of(path: Path) -> str | None:
    """The SOP Instance UID a file claims, as ingest would read it."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - a file pydicom cannot parse is never stored
        return None
    uid = ds.get("SOPInstanceUID") or ds.file_meta.get("MediaStorageSOPInstanceUID")
    return str(uid) if uid else None


def write_synthetic(
    path: Path, rng: np.random.Generator, study_uid: str, series_uid: str,
    number: int, rows: int, frames: int,
) -> None:
    """Write a native 16-bit instance: a smooth gradient plus seeded noise."""
    sop_class = (MultiFrameGrayscaleWordSecondaryCaptureImageStorage if frames > 1
                 else CTImageStorage)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = "CRASH-SYN"
    ds.PatientName = "Synthetic^Crash"
    ds.StudyDate = "20240101"
    ds.Modality = "CT" if frames == 1 else "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    gradient = np.add.outer(np.arange(rows) * 3, np.arange(rows) * 5)
    pixels = np.stack([
        (gradient + 40 * f + rng.integers(0, 48, (rows, rows))) % 4096
        for f in range(frames)
    ]).astype("<u2")
    ds.PixelData = pixels.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def synthetic_pool(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    """``count`` distinct instances of 128 KB to 4 MB in a dozen studies."""
    folder.mkdir()
    studies = [(generate_uid(), generate_uid()) for _ in range(12)]
    paths = []
    for number in range(1, count + 1):
        study_uid, series_uid = studies[number % len(studies)]
        rows = int(rng.choice([256, 384, 512]))
        frames = int(rng.choice([1, 1, 1, 2, 3, 5, 8]))
        path = folder / f"synthetic-{number:03d}.dcm"
        write_synthetic(path, rng, study_uid, series_uid, number, rows, frames)
        paths.append(path)
    return paths


class Ingester(threading.Thread):
    """Stores each file of a pool in its own upload stream, riding out kills.

    A file whose upload fails because the server died is sent again once the
    server is back, as a client that got no answer would do; the reply to
    the attempt that got through is the acknowledgement.
    """

    def __init__(self, server: ServerProcess, pool: list[Path], up: threading.Event):
        super().__init__(name="crash-ingest", daemon=True)
        self.server = server
        self.pool = pool
        self.up = up
        self.replies: dict[Path, archive_pb2.StoreResult] = {}
        self.interrupted: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for path in self.pool:
                self.replies[path] = self._store(path)
        except BaseException as err:  # noqa: BLE001 - re-raised by the test thread
            self.error = err

    def _store(self, path: Path) -> archive_pb2.StoreResult:
        for _attempt in range(MAX_ATTEMPTS):
            if not self.up.wait(timeout=120):
                raise TimeoutError("the server did not come back within 120 s")
            # A fresh channel per upload: a channel that saw the server die
            # waits out its reconnect backoff, which would skew the timing.
            client = Client(self.server.address)
            try:
                reply = client.archive.Store(upload_messages([path]), timeout=120)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                self.interrupted.append(path.name)
                time.sleep(0.05)
                continue
            finally:
                client.close()
            (result,) = reply.results
            return result
        raise AssertionError(f"{path.name} got no answer in {MAX_ATTEMPTS} attempts")


@dataclass
class CrashRun:
    """What the crash scenario produced and what the restarted server shows."""

    pool: list[Path]
    synthetic: list[Path]
    sha256: dict[Path, str]
    uids: dict[Path, str | None]
    replies: dict[Path, archive_pb2.StoreResult]
    interrupted: list[str]
    retrieved: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    searched: set[str] = field(default_factory=set)
    in_sql: set[str] = field(default_factory=set)
    repair: admin_pb2.VerifyResponse | None = None
    after_repair: admin_pb2.VerifyResponse | None = None
    recovery_events: list[str] = field(default_factory=list)

    def acknowledged(self) -> dict[Path, archive_pb2.StoreResult]:
        return {p: r for p, r in self.replies.items() if r.outcome in ACKNOWLEDGED}


def wait_for_stage(spool: Path, staged: bool, timeout: float = 10.0) -> None:
    """Return once an instance is being staged, or with ``staged``, once it is."""
    # Ingest stages an instance in ``spool/stage-<op_id>``, frames first and
    # the envelope last, then opens the write intent and moves the staged
    # objects into the tier; the folder goes after the catalog commit.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stage in spool.glob("stage-*"):
            if not staged or (stage / ENVELOPE_NAME).exists():
                return
        time.sleep(0.001)
    raise AssertionError(f"no instance was staged under {spool} in {timeout} s")


def kill_and_restart_during(ingester: Ingester, server: ServerProcess,
                            up: threading.Event, rng: random.Random) -> None:
    """SIGKILL the server at each of KILL_MOMENTS while ingest runs; restart it."""
    for kill, moment in enumerate(KILL_MOMENTS, 1):
        time.sleep(rng.uniform(*KILL_DELAY))
        if moment != "upload" and ingester.is_alive():
            wait_for_stage(server.data_dir / "spool", staged=moment == "writing")
            time.sleep(rng.uniform(0.0, WRITE_SPAN))
        assert ingester.is_alive(), (
            f"ingest finished before kill {kill} of {len(KILL_MOMENTS)}; the scenario "
            "no longer crashes a busy server (shorten KILL_DELAY or grow the pool)"
        )
        up.clear()
        server.kill()
        server.start()
        up.set()


def observe(run: CrashRun, client: Client, out: Path) -> None:
    """Retrieve every UID the pool holds; list both indexes; verify twice."""
    # Retrieve looks instances up in the LMDB catalog, so the UIDs it finds
    # are the catalog's visible set (the pool holds every UID ever sent).
    for uid in sorted({u for u in run.uids.values() if u}):
        try:
            info = client.retrieve(uid, out)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                run.unreadable[uid] = f"{err.code().name}: {err.details()}"
            continue
        found = sha256_file(out)
        out.unlink()
        if found != info.sha256:
            run.unreadable[uid] = (f"retrieved sha256 {found}, "
                                   f"catalog says {info.sha256}")
        run.retrieved[uid] = found

    hits = client.search(archive_pb2.INSTANCE, {})
    run.searched = {hit[SOP_INSTANCE_UID_TAG]["Value"][0] for hit in hits}
    _columns, rows = client.sql("select sop_instance_uid from instances")
    run.in_sql = {row[0] for row in rows}

    run.repair = client.verify(repair=True)
    run.after_repair = client.verify(repair=False)


@pytest.fixture(scope="module")
def run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashRun]:
    """Ingest the pool through the kills, then observe the restarted server."""
    base = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(SEED)
    synthetic = synthetic_pool(base / "synthetic", SYNTHETIC_INSTANCES, rng)
    pool = sorted(corpus.rglob("*.dcm")) + synthetic
    random.Random(SEED).shuffle(pool)

    server = ServerProcess(base / "data")
    up = threading.Event()
    try:
        server.start()
        up.set()
        ingester = Ingester(server, pool, up)
        ingester.start()
        kill_and_restart_during(ingester, server, up, random.Random(SEED + 1))
        ingester.join(timeout=300)
        assert not ingester.is_alive(), "ingest did not finish within 300 s"
        if ingester.error is not None:
            raise ingester.error

        result = CrashRun(
            pool=pool, synthetic=synthetic,
            sha256={p: sha256_file(p) for p in pool},
            uids={p: sop_instance_uid_of(p) for p in pool},
            replies=ingester.replies, interrupted=ingester.interrupted,
        )
        client = server.client()
        try:
            observe(result, client, base / "retrieved.dcm")
        finally:
            client.close()
    finally:
        server.stop()
    result.recovery_events = [
        line for line in server.log_path.read_text().splitlines()
        if "event=write.rolled_" in line or "event=index.replayed" in line
    ]
    print(f"kills={len(KILL_MOMENTS)} interrupted_uploads={len(result.interrupted)} "
          f"acknowledged={len(result.acknowledged())} of {len(pool)}")
    print("\n".join(result.recovery_events))
    yield result


class TestCrashDuringIngest:
    """kill -9 mid-ingest loses nothing acknowledged and shows nothing partial."""

    def test_every_upload_is_answered_and_every_synthetic_one_acknowledged(
        self, run: CrashRun
    ) -> None:
        """Every upload gets a reply; refusals are of corpus files, never internal."""
        assert run.interrupted, "no upload was interrupted; the kills missed the ingest"
        assert set(run.replies) == set(run.pool)
        not_acked = {p.name: run.replies[p].reason for p in run.synthetic
                     if run.replies[p].outcome not in ACKNOWLEDGED}
        assert not_acked == {}
        internal = {p.name: r.reason for p, r in run.replies.items()
                    if r.outcome == archive_pb2.REJECTED
                    and "internal error" in r.reason}
        assert internal == {}

    def test_every_acknowledged_instance_retrieves_bit_exact(
        self, run: CrashRun
    ) -> None:
        """Each STORED or DUPLICATE reply carries the file's sha256 and retrieves so."""
        wrong = {}
        for path, reply in run.acknowledged().items():
            expected = run.sha256[path]
            found = run.retrieved.get(reply.sop_instance_uid, "not retrievable")
            if reply.sha256 != expected or found != expected:
                wrong[path.name] = (f"file {expected}, reply {reply.sha256}, "
                                    f"retrieved {found}")
        assert wrong == {}

    def test_every_listed_instance_is_complete_and_both_indexes_agree(
        self, run: CrashRun
    ) -> None:
        """LMDB, Search and SQL list the same UIDs; each retrieves a whole pool file."""
        assert run.unreadable == {}
        assert run.searched == run.in_sql
        assert set(run.retrieved) == run.in_sql
        pool_sha256 = {(run.uids[p], run.sha256[p]) for p in run.pool}
        foreign = {uid: sha for uid, sha in run.retrieved.items()
                   if (uid, sha) not in pool_sha256}
        assert foreign == {}

    def test_verify_finds_no_damage_and_repair_leaves_nothing_behind(
        self, run: CrashRun
    ) -> None:
        """verify(repair) finds no corrupt or missing object, then verify finds none."""
        assert run.repair is not None and run.after_repair is not None
        damaged = [(p.kind, p.key, p.detail) for p in run.repair.problems
                   if p.kind in ("corrupt", "missing")]
        assert damaged == []
        assert run.repair.instances_checked == len(run.retrieved)
        assert [(p.kind, p.key) for p in run.after_repair.problems] == []
