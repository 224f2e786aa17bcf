"""Fixtures for the security tests: a server that requires tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security import HS256_SECRET, jwt_env
from tests.server import ServerProcess


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "jwt.key"
    path.write_text(HS256_SECRET + "\n")
    return path


@pytest.fixture(scope="module")
def jwt_server(
    tmp_path_factory: pytest.TempPathFactory, key_file: Path
) -> Iterator[ServerProcess]:
    """One live server per module that requires HS256 bearer tokens."""
    data = tmp_path_factory.mktemp("jwt-srv") / "data"
    with ServerProcess(data, env=jwt_env(key_file)) as proc:
        yield proc
