"""dicomvault alone on its gRPC API: Store throughput and GetFrames streaming,
beside a bare grpcio stream of the same bytes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dicomvault.proto import archive_pb2
from dicomvault.tools.bench import echo
from dicomvault.tools.bench.generator import BenchData, MultiFrame
from dicomvault.tools.bench.peers import free_port
from dicomvault.tools.bench.results import Results
from dicomvault.tools.client import Client, connect

STORED = archive_pb2.STORED


def measure_store(
    results: Results, client_factory: Callable[[], Client], name: str, paths: list[Path]
) -> None:
    """Store ``paths`` over gRPC in 4 parallel streams; instances/s and MB/s."""
    size = sum(p.stat().st_size for p in paths)
    groups = [paths[i::4] for i in range(4) if paths[i::4]]

    def upload(group: list[Path]) -> list[int]:
        client = client_factory()
        try:
            return [r.outcome for r in client.store(group)]
        finally:
            client.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(len(groups)) as pool:
        outcomes = [o for batch in pool.map(upload, groups) for o in batch]
    elapsed = time.perf_counter() - start
    refused = sum(1 for o in outcomes if o != STORED)
    key = f"grpc.store.{name}"
    if refused:
        results.fail("dicomvault", key, f"{refused} of {len(paths)} not stored")
        return
    results.put("dicomvault", f"{key}.instances_per_s", len(paths) / elapsed)
    results.put("dicomvault", f"{key}.mb_per_s", size / elapsed / 1e6)


def measure_get_frames(
    results: Results, client: Client, item: MultiFrame, reference: MultiFrame
) -> None:
    """Stream every frame of ``item`` as stored and decoded; check each one.

    Frames as stored must equal the stored bytes; decoded frames must equal
    the pixels of ``reference`` (the native copy of the same image).
    """
    numbers = list(range(1, len(item.frames) + 1))
    name = "mr" if item is reference else "mr_j2k"
    for decode in (False, True):
        mode = "decoded" if decode else "stored"
        key = f"grpc.get_frames.{name}.{mode}"
        start = time.perf_counter()
        got = list(client.frames(item.sop_instance_uid, numbers, decode))
        elapsed = time.perf_counter() - start
        wrong = 0
        for number, _pixel, data in got:
            if decode:
                expected = np.frombuffer(reference.frame_bytes(number), "<u2")
                ok = np.array_equal(np.frombuffer(data, "<u2"), expected)
            else:
                ok = data == item.frame_bytes(number)
            wrong += not ok
        if wrong or len(got) != len(numbers):
            results.fail(
                "dicomvault",
                key,
                f"{wrong} wrong and {len(numbers) - len(got)} missing frames",
            )
            continue
        total = sum(len(d) for _, _, d in got)
        results.put("dicomvault", f"{key}.frames_per_s", len(got) / elapsed)
        results.put("dicomvault", f"{key}.mb_per_s", total / elapsed / 1e6)


def measure_echo(results: Results, item: MultiFrame) -> None:
    """The same frames from a bare grpcio stream, checked the same way."""
    port = free_port()
    offset, length = item.frames[0]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dicomvault.tools.bench.echo",
            str(port),
            str(item.path),
            str(offset),
            str(length),
            str(len(item.frames)),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        channel = connect(f"127.0.0.1:{port}")
        start = time.perf_counter()
        got = echo.fetch(channel)
        elapsed = time.perf_counter() - start
        channel.close()
    finally:
        proc.terminate()
        proc.wait()
    wrong = sum(1 for i, d in enumerate(got) if d != item.frame_bytes(i + 1))
    key = "grpc.get_frames.mr.stored"
    if wrong or len(got) != len(item.frames):
        results.fail("bare-grpc", key, f"{wrong} wrong frames of {len(got)}")
        return
    total = sum(len(d) for d in got)
    results.put("bare-grpc", f"{key}.frames_per_s", len(got) / elapsed)
    results.put("bare-grpc", f"{key}.mb_per_s", total / elapsed / 1e6)


def run_grpc_suite(results: Results, address: str, data: BenchData) -> None:
    """Store (a), (b) and (c) over gRPC, then stream (b) and (c) back."""
    measure_store(results, lambda: Client(address), "ct", data.ct)
    measure_store(results, lambda: Client(address), "mr", [data.mr.path])
    measure_store(results, lambda: Client(address), "mr_j2k", [data.mr_j2k.path])
    client = Client(address)
    try:
        measure_get_frames(results, client, data.mr, data.mr)
        measure_get_frames(results, client, data.mr_j2k, data.mr)
    finally:
        client.close()
    measure_echo(results, data.mr)
