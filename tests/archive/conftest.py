"""Fixtures for archive tests: a live server and the shared corpus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import ServerProcess, corpus_dir


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_dir()
    if not (path / "MANIFEST.csv").exists():
        pytest.fail(f"the shared corpus is missing at {path}")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One live server per test module."""
    with ServerProcess(tmp_path_factory.mktemp("srv") / "data") as proc:
        yield proc
