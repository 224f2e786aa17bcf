"""The tier contract for :class:`~dicomvault.tiers.local.LocalTier`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dicomvault.tiers import LocalTier, ObjectKey, TierError

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

    @pytest.mark.xfail(
        strict=True,
        raises=FileNotFoundError,
        reason="LocalTier.put_file(move=True) renames the source to its temporary "
        "name first and unlinks that name when verification fails: the source is "
        "lost",
    )
    def test_failed_move_keeps_the_source(
        self, tier: LocalTier, tmp_path: Path
    ) -> None:
        """A move whose verification fails stores nothing and keeps the source."""
        super().test_failed_move_keeps_the_source(tier, tmp_path)

    @pytest.mark.xfail(
        strict=True,
        raises=TierError,
        reason="LocalTier translates IsADirectoryError to a plain TierError, so "
        "reading a key that is a folder of other keys is not ObjectNotFoundError",
    )
    def test_folder_of_other_keys_is_not_an_object(self, tier: LocalTier) -> None:
        """A prefix that only holds other keys is not itself an object."""
        super().test_folder_of_other_keys_is_not_an_object(tier)
