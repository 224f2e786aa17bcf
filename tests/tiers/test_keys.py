"""Keys built from untrusted text never leave the tier's root."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomvault.archive.errors import UnsafeUIDError
from dicomvault.archive.uids import check_uid
from dicomvault.tiers import InvalidKeyError, LocalTier, ObjectKey, make_key

HOSTILE_PARTS = ["..", ".", "", "/", "a/../..", "\x00", "..\\..", "~", " "]


class TestMakeKey:
    """make_key and check_uid against arbitrary and crafted input."""

    @settings(max_examples=500, deadline=None, database=None)
    @given(parts=st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=4))
    def test_any_text_yields_a_key_inside_the_root_or_is_refused(
        self, parts: list[str]
    ) -> None:
        """Whatever the parts, the key resolves below the root or raises."""
        root = Path("/srv/tier")
        try:
            key = make_key(*parts)
        except InvalidKeyError:
            return
        resolved = (root / key).resolve()
        assert resolved.is_relative_to(root)
        assert resolved != root

    @pytest.mark.parametrize("part", HOSTILE_PARTS)
    def test_crafted_parts_are_refused(self, part: str) -> None:
        """Parent, current, empty, separator, NUL and backslash parts are refused."""
        with pytest.raises(InvalidKeyError, match="unsafe object key component"):
            make_key("studies", part, "envelope.bin")

    @settings(max_examples=500, deadline=None, database=None)
    @given(value=st.text(max_size=80))
    def test_every_accepted_uid_is_a_safe_key_part(self, value: str) -> None:
        """A UID check_uid accepts is always a safe key component."""
        try:
            uid = check_uid(value, "StudyInstanceUID")
        except UnsafeUIDError:
            return
        assert make_key("studies", uid) == f"studies/{uid}"

    def test_local_tier_refuses_a_parent_key_and_reads_nothing_outside(
        self, tmp_path: Path
    ) -> None:
        """A key naming '..' never reaches a file outside the tier's folder."""
        tier = LocalTier("hot", tmp_path / "tier")
        (tmp_path / "secret").write_bytes(b"outside")

        with pytest.raises(InvalidKeyError):
            tier.read_bytes(ObjectKey("../secret"))
