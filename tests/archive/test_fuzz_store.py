"""Hostile input through the store path: mutated corpus files and headers.

Every case must end as stored, duplicate or a DicomVaultError/TierError:
no other exception, no case slower than the deadline, nothing half stored
(verify finds no damage or leftovers afterwards), and a live server keeps
answering. The default example counts suit CI; the ``slow`` variants run
many more.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import DicomVaultError
from dicomvault.archive.service import Archive
from dicomvault.proto import archive_pb2
from dicomvault.tiers import TierError
from tests.server import ServerProcess, corpus_dir

from .hostile import make_instance

# Per-case wall-clock limit: a case slower than this counts as a hang.
CASE_SECONDS = 10.0
IN_PROCESS_EXAMPLES = 1500
GRPC_CASES = 300
SEED_LIMIT_BYTES = 16 << 10
LIMITS = {"ingest.max_sequence_depth": 8, "ingest.max_element_bytes": 1 << 20}


def _seeds(tmp: Path) -> list[bytes]:
    """Small real corpus files, plus hand-made deep and long headers."""
    with open(corpus_dir() / "MANIFEST.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["bytes"]) <= SEED_LIMIT_BYTES]
    seeds = [(corpus_dir() / r["file"]).read_bytes() for r in rows]
    seeds.append(make_instance(tmp / "deep.dcm", depth=6).read_bytes())
    seeds.append(make_instance(tmp / "long.dcm", long_value=3000).read_bytes())
    seeds.append(make_instance(tmp / "plain.dcm").read_bytes())
    return seeds


@st.composite
def mutations(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations applied."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "length", "dup"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "length" and len(data) >= at + 4:
            # A length field rewritten to undefined, huge or zero.
            data[at : at + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\0" * 4])
            )
        elif kind == "dup":
            end = draw(st.integers(at, min(len(data), at + 512)))
            data[at:at] = data[at:end]
    return bytes(data)


def _store_one(archive: Archive, path: Path, data: bytes) -> str:
    """Store one case; return its outcome or the error class name."""
    path.write_bytes(data)
    started = time.monotonic()
    try:
        outcome = archive.store_file(path).outcome
    except (DicomVaultError, TierError) as err:
        outcome = type(err).__name__
    elapsed = time.monotonic() - started
    assert elapsed < CASE_SECONDS, f"case took {elapsed:.1f} s"
    return outcome


@pytest.fixture(scope="module")
def fuzz_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    folder = tmp_path_factory.mktemp("fuzz")
    archive = Archive.open(
        load_settings(
            overrides={"server.data_dir": str(folder / "data"), **LIMITS}, environ={}
        )
    )
    yield archive
    archive.close()


def _run_in_process(archive: Archive, tmp: Path, examples: int) -> dict[str, int]:
    seeds = _seeds(tmp)
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=mutations(seeds))
    def case(data: bytes) -> None:
        outcome = _store_one(archive, tmp / "case.dcm", data)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert list(archive.spool_dir.iterdir()) == []

    case()
    return outcomes


def _assert_nothing_half_stored(archive: Archive) -> None:
    report = archive.verify(repair=False)
    assert [(p.kind, p.key) for p in report.problems] == []


class TestFuzzStoreInProcess:
    """Thousands of mutated files through Archive.store_file."""

    def test_mutated_files_are_stored_or_refused_and_nothing_is_half_stored(
        self, fuzz_archive: Archive, tmp_path: Path
    ) -> None:
        """Every case ends cleanly; verify then finds no damage or leftovers."""
        outcomes = _run_in_process(fuzz_archive, tmp_path, IN_PROCESS_EXAMPLES)

        print(f"fuzz outcomes: {outcomes}")
        assert sum(outcomes.values()) >= IN_PROCESS_EXAMPLES * 0.9
        assert len(outcomes) >= 3
        _assert_nothing_half_stored(fuzz_archive)

    @pytest.mark.slow
    def test_many_more_mutated_files_are_stored_or_refused(
        self, fuzz_archive: Archive, tmp_path: Path
    ) -> None:
        """The soak variant: 30,000 cases."""
        outcomes = _run_in_process(fuzz_archive, tmp_path, 30_000)

        print(f"fuzz outcomes: {outcomes}")
        _assert_nothing_half_stored(fuzz_archive)


def _grpc_cases(tmp: Path, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    seeds = _seeds(tmp)
    files = []
    for i in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(max(1, len(data)))
            choice = rng.random()
            if choice < 0.5 and data:
                data[at] ^= rng.randint(1, 255)
            elif choice < 0.7:
                del data[at:]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 64))
        path = tmp / f"case-{i}.dcm"
        path.write_bytes(bytes(data))
        files.append(path)
    return files


class TestFuzzStoreOverGrpc:
    """A few hundred mutated files through a live server."""

    def test_server_answers_every_case_and_keeps_serving(
        self, server: ServerProcess, tmp_path: Path
    ) -> None:
        """No case is an internal error, the server still stores, verify is clean."""
        files = _grpc_cases(tmp_path, GRPC_CASES, seed=7)
        client = server.client()

        results = []
        for start in range(0, len(files), 50):
            results.extend(client.store(files[start : start + 50]))

        assert len(results) == len(files)
        internal = [r.reason for r in results if "internal error" in r.reason]
        assert internal == []
        good = make_instance(tmp_path / "after.dcm", "1.2.826.0.1.3680043.8.498.77")
        assert client.store([good])[0].outcome == archive_pb2.STORED
        report = client.verify(repair=False)
        assert list(report.problems) == []
        assert server.proc is not None and server.proc.poll() is None
