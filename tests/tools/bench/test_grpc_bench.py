"""dicomvault's gRPC figures and the bare grpcio stream, on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dicomvault.tools.bench.generator import BenchData
from dicomvault.tools.bench.grpc_bench import measure_get_frames, run_grpc_suite
from dicomvault.tools.bench.results import Results
from tests.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("grpc-bench") / "data") as running:
        yield running


class TestGrpcSuite:
    def test_every_figure_is_measured_on_checked_frames(
        self, server: ServerProcess, tiny: BenchData
    ) -> None:
        """Store, GetFrames stored/decoded of (b) and (c), and the bare stream."""
        results = Results()
        run_grpc_suite(results, server.address, tiny)
        assert results.failures == {}
        ours = results.figures["dicomvault"]
        for name in ("mr", "mr_j2k"):
            for mode in ("stored", "decoded"):
                assert ours[f"grpc.get_frames.{name}.{mode}.frames_per_s"] > 0
        assert ours["grpc.store.ct.instances_per_s"] > 0
        assert results.figures["bare-grpc"]["grpc.get_frames.mr.stored.mb_per_s"] > 0

    def test_frames_differing_from_the_source_are_a_failure(
        self, server: ServerProcess, tiny: BenchData, tmp_path: Path
    ) -> None:
        """Checked against shifted offsets, every frame is wrong: no figure."""
        shifted = replace(tiny.mr, frames=[(o + 2, n) for o, n in tiny.mr.frames])
        results = Results()
        client = server.client()
        try:
            measure_get_frames(results, client, shifted, shifted)
        finally:
            client.close()
        assert results.failures["dicomvault"] == {
            "grpc.get_frames.mr.stored": "4 wrong and 0 missing frames",
            "grpc.get_frames.mr.decoded": "4 wrong and 0 missing frames",
        }
        assert "dicomvault" not in results.figures
