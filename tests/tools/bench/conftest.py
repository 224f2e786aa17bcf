"""A tiny generated data set shared by the benchmark's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomvault.tools.bench.generator import BenchData, Sizes, generate

TINY = Sizes(ct_instances=3, mr_frames=4, mixed_studies=8)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(scope="session")
def tiny(tiny_cache: Path) -> BenchData:
    """Three CT slices, a 4-frame MR in native and JPEG 2000, eight studies."""
    return generate(tiny_cache, 5, TINY)
