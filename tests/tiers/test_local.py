"""The tier contract for :class:`~dicomvault.tiers.local.LocalTier`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dicomvault.tiers import LocalTier, ObjectKey

from .contract import Corrupt, TierContract


class TestLocalTier(TierContract):
    """LocalTier passes the contract, on a fresh folder per test."""

    @pytest.fixture
    def tier(self, tmp_path: Path) -> LocalTier:
        return LocalTier("hot", tmp_path / "tier")

    @pytest.fixture
    def storage_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def corrupt(self, tier: LocalTier) -> Corrupt:
        def flip(key: ObjectKey, offset: int) -> None:
            path = tier.path_of(key)
            data = bytearray(path.read_bytes())
            data[offset] ^= 0xFF
            path.write_bytes(bytes(data))

        return flip
