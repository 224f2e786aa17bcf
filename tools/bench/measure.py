"""The DICOMweb measurements, run the same way against every peer."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dicomvault.tools.bench.dicomweb import (
    AS_STORED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    DicomwebClient,
    DicomwebError,
)
from dicomvault.tools.bench.generator import BenchData, MultiFrame
from dicomvault.tools.bench.peers import Peer
from dicomvault.tools.bench.results import Results

EXPECTED_ERRORS = (DicomwebError, OSError)


@dataclass(frozen=True, slots=True)
class Plan:
    """How many repetitions and random frames; ``quick`` is for development."""

    random_frames: int
    repeats: int
    seed: int


def _uids(item: MultiFrame) -> tuple[str, str, str]:
    return (item.study_uid, item.series_uid, item.sop_instance_uid)


def stow(
    results: Results,
    peer: str,
    client: DicomwebClient,
    name: str,
    paths: list[Path],
    clients: int,
) -> None:
    """STOW-RS one instance per request from ``clients`` threads."""
    size = sum(p.stat().st_size for p in paths)
    key = f"stow.{name}.c{clients}"
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda p: client.store([p]), paths))
    except EXPECTED_ERRORS as err:
        results.fail(peer, key, str(err))
        return
    elapsed = time.perf_counter() - start
    results.put(peer, f"{key}.instances_per_s", len(paths) / elapsed)
    results.put(peer, f"{key}.mb_per_s", size / elapsed / 1e6)


def stow_corpus(
    results: Results, peer: str, client: DicomwebClient, paths: list[Path]
) -> None:
    """STOW-RS the real corpus; files a server refuses are counted, not fatal."""
    refused = 0
    for path in paths:
        try:
            client.store([path])
        except DicomwebError:
            refused += 1
    results.put(peer, "stow.corpus.refused_files", refused)


def timed(call: Callable[[], list[Any]], repeats: int) -> tuple[list[float], list[Any]]:
    """Seconds of each of ``repeats`` calls, and the last answer."""
    seconds: list[float] = []
    answer: list[Any] = []
    for _ in range(repeats):
        start = time.perf_counter()
        answer = call()
        seconds.append(time.perf_counter() - start)
    return seconds, answer


def qido(
    results: Results, peer: str, client: DicomwebClient, data: BenchData, plan: Plan
) -> None:
    """The QIDO-RS searches; each answer must contain the generated matches."""
    ct_series = f"/studies/{data.ct_study_uid}/series/{data.ct_series_uid}/instances"
    searches: list[tuple[str, str, dict[str, str], int]] = [
        ("patient_id", "/studies", {"PatientID": data.patient_id}, 1),
        ("date_range", "/studies", {"StudyDate": "20170101-20191231"}, 1),
        ("modality", "/studies", {"ModalitiesInStudy": "MR"}, 1),
        ("name_wildcard", "/studies", {"PatientName": "GARCIA*"}, 1),
        ("series_instances", ct_series, {}, len(data.ct)),
    ]
    for name, path, params, at_least in searches:
        key = f"qido.{name}"
        try:
            seconds, answer = timed(partial(client.search, path, params), plan.repeats)
        except EXPECTED_ERRORS as err:
            results.fail(peer, key, str(err))
            continue
        if len(answer) < at_least:
            results.fail(peer, key, f"{len(answer)} matches, expected {at_least}+")
            continue
        results.put_latencies(peer, key, seconds)
        results.put(peer, f"{key}.matches", len(answer))


def frames(
    results: Results,
    peer: str,
    client: DicomwebClient,
    item: MultiFrame,
    reference: MultiFrame,
    syntax: str,
    plan: Plan,
) -> None:
    """WADO-RS single frames: first, middle, last and random ones, each checked.

    As stored, a frame must equal its stored bytes (an encapsulated frame may
    come without its fragment's padding byte); transcoded to explicit VR
    little endian, it must equal the pixels of ``reference``.
    """
    count = len(item.frames)
    label = "stored" if syntax == AS_STORED else "explicit_le"
    name = "mr" if item is reference else "mr_j2k"
    key = f"wado.frames.{name}.{label}"
    rng = random.Random(plan.seed)
    picks = [("first", 1), ("middle", (count + 1) // 2), ("last", count)]
    picks += [("random", rng.randint(1, count)) for _ in range(plan.random_frames)]
    seconds: dict[str, list[float]] = {}
    for what, number in picks:
        start = time.perf_counter()
        try:
            got = client.frames(_uids(item), [number], syntax)
        except EXPECTED_ERRORS as err:
            results.fail(peer, key, f"frame {number}: {err}"[:300])
            return
        elapsed = time.perf_counter() - start
        if len(got) != 1 or not _frame_matches(got[0], item, reference, number, syntax):
            results.fail(peer, key, f"frame {number}: wrong bytes returned")
            return
        seconds.setdefault(what, []).append(elapsed)
    for what in ("first", "middle", "last"):
        results.put(peer, f"{key}.{what}_ms", seconds[what][0] * 1e3)
    if seconds.get("random"):
        results.put_latencies(peer, f"{key}.random", seconds["random"])


def _frame_matches(
    data: bytes, item: MultiFrame, reference: MultiFrame, number: int, syntax: str
) -> bool:
    if syntax != AS_STORED:
        expected = np.frombuffer(reference.frame_bytes(number), "<u2")
        return len(data) == expected.nbytes and bool(
            np.array_equal(np.frombuffer(data, "<u2"), expected)
        )
    stored = item.frame_bytes(number)
    return bool(data == stored or (stored.endswith(b"\x00") and data == stored[:-1]))


def whole_instance(
    results: Results, peer: str, client: DicomwebClient, item: MultiFrame, name: str
) -> None:
    """WADO-RS the whole instance as stored; it must equal the file sent."""
    key = f"wado.instance.{name}"
    start = time.perf_counter()
    try:
        data = client.instance(_uids(item))
    except EXPECTED_ERRORS as err:
        results.fail(peer, key, str(err))
        return
    elapsed = time.perf_counter() - start
    if data != item.path.read_bytes():
        results.fail(peer, key, "returned instance differs from the stored file")
        return
    results.put(peer, f"{key}.mb_per_s", len(data) / elapsed / 1e6)


def metadata(
    results: Results, peer: str, client: DicomwebClient, data: BenchData, plan: Plan
) -> None:
    """Series metadata of (a) and instance metadata of (b)."""
    study, series, sop = _uids(data.mr)
    paths = [
        (
            "series.ct",
            f"/studies/{data.ct_study_uid}/series/{data.ct_series_uid}",
            len(data.ct),
        ),
        ("instance.mr", f"/studies/{study}/series/{series}/instances/{sop}", 1),
    ]
    for name, path, expected in paths:
        key = f"metadata.{name}"
        try:
            seconds, answer = timed(partial(client.metadata, path), plan.repeats)
        except EXPECTED_ERRORS as err:
            results.fail(peer, key, str(err))
            continue
        if len(answer) != expected:
            results.fail(peer, key, f"{len(answer)} instances, expected {expected}")
            continue
        results.put_latencies(peer, key, seconds)


def run_dicomweb_suite(
    results: Results, peer: Peer, data: BenchData, corpus: list[Path], plan: Plan
) -> None:
    """Every DICOMweb measurement against one started peer, in a fixed order."""
    assert peer.dicomweb_url is not None
    client = DicomwebClient(peer.dicomweb_url)
    name = peer.name
    print(f"{name}: STOW-RS", flush=True)
    stow(results, name, client, "mixed", data.mixed, 1)
    stow_corpus(results, name, client, corpus)
    before = peer.stored_bytes()
    stow(results, name, client, "ct", data.ct, 4)
    stow(results, name, client, "mr", [data.mr.path], 1)
    after = peer.stored_bytes()
    input_bytes = data.bytes_of([*data.ct, data.mr.path])
    results.put(name, "disk.ct_mr.stored_bytes", after - before)
    results.put(name, "disk.ct_mr.input_bytes", input_bytes)
    results.put(name, "disk.ct_mr.stored_over_input", (after - before) / input_bytes)
    stow(results, name, client, "mr_j2k", [data.mr_j2k.path], 1)
    print(f"{name}: QIDO-RS", flush=True)
    qido(results, name, client, data, plan)
    print(f"{name}: WADO-RS frames", flush=True)
    frames(results, name, client, data.mr, data.mr, AS_STORED, plan)
    frames(results, name, client, data.mr_j2k, data.mr, AS_STORED, plan)
    frames(results, name, client, data.mr_j2k, data.mr, EXPLICIT_VR_LITTLE_ENDIAN, plan)
    print(f"{name}: WADO-RS instances and metadata", flush=True)
    whole_instance(results, name, client, data.mr, "mr")
    whole_instance(results, name, client, data.mr_j2k, "mr_j2k")
    metadata(results, name, client, data, plan)
