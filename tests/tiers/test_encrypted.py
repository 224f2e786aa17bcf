"""The tier contract for :class:`~dicomvault.tiers.encrypted.EncryptedTier`.

The contract runs over an encrypted tier on a local folder and on SeaweedFS.
Beyond it: the raw objects hold no DICOM, a wrong or missing master key is a
clear error, a ranged read stays small, and rotation re-wraps data keys
without rewriting a single sealed object.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from dicomvault.tiers import (
    EncryptionKeyError,
    LocalTier,
    ObjectKey,
    TierIntegrityError,
    open_tier,
)
from dicomvault.tiers.encrypted import HEADER_BYTES, EncryptedTier
from dicomvault.tiers.master_keys import LocalKeyProvider, key_id_of
from dicomvault.tiers.s3 import S3Tier

from ..s3server import SeaweedServer
from .contract import DATA, Corrupt, TierContract

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key_file(folder: Path, key: bytes, name: str = "master.key") -> Path:
    path = folder / name
    path.write_text(key.hex() + "\n")
    return path


class _EncryptedContract(TierContract):
    """The contract, with the two tests whose outcome sealing changes."""

    def test_flipped_byte_is_returned_as_stored_not_hidden(
        self, tier: EncryptedTier, corrupt: Corrupt
    ) -> None:
        """A byte flipped in a sealed block fails authentication on every read."""
        k = ObjectKey("studies/1.2.3/instance.bin")
        tier.put_bytes(k, DATA, sha256=_sha256(DATA))

        corrupt(k, HEADER_BYTES + 1234)

        message = re.escape(
            f"object {k!r} in tier {tier.name!r}: sealed block 0 failed "
            "authentication (AES-GCM tag mismatch)"
        )
        with pytest.raises(TierIntegrityError, match=message):
            tier.read_bytes(k)
        with pytest.raises(TierIntegrityError, match=message):
            tier.read_range(k, 1234, 1)
        with pytest.raises(TierIntegrityError, match=message):
            with tier.open_read(k) as stream:
                stream.read()

    def test_open_tier_builds_this_backend_from_its_url(
        self, tier: EncryptedTier, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        """open_tier(url, encryption=...) reopens the same sealed objects."""
        k = ObjectKey("by-url.bin")
        tier.put_bytes(k, DATA, sha256=_sha256(DATA))

        opened = open_tier(
            "again",
            tier.url,
            storage_options,
            {"key_file": str(_key_file(tmp_path, KEY_A))},
        )

        assert isinstance(opened, EncryptedTier)
        assert type(opened.inner) is type(tier.inner)
        assert opened.read_bytes(k) == DATA


class TestEncryptedLocalTier(_EncryptedContract):
    """EncryptedTier over LocalTier passes the contract."""

    @pytest.fixture
    def tier(self, tmp_path: Path) -> EncryptedTier:
        return EncryptedTier(
            LocalTier("hot", tmp_path / "tier"), LocalKeyProvider(KEY_A)
        )

    @pytest.fixture
    def storage_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def corrupt(self, tier: EncryptedTier) -> Corrupt:
        inner = tier.inner
        assert isinstance(inner, LocalTier)

        def flip(key: ObjectKey, offset: int) -> None:
            path = inner.path_of(key)
            data = bytearray(path.read_bytes())
            data[offset] ^= 0xFF
            path.write_bytes(bytes(data))

        return flip


class TestEncryptedS3Tier(_EncryptedContract):
    """EncryptedTier over S3Tier passes the contract on SeaweedFS."""

    @pytest.fixture
    def storage_options(self, seaweed: SeaweedServer) -> dict[str, Any]:
        return seaweed.storage_options()

    @pytest.fixture
    def tier(self, s3_tier_url: str, storage_options: dict[str, Any]) -> EncryptedTier:
        return EncryptedTier(
            S3Tier("hot", s3_tier_url, storage_options), LocalKeyProvider(KEY_A)
        )

    @pytest.fixture
    def corrupt(self, tier: EncryptedTier, seaweed: SeaweedServer) -> Corrupt:
        fs = seaweed.filesystem()
        inner = tier.inner
        assert isinstance(inner, S3Tier)

        def flip(key: ObjectKey, offset: int) -> None:
            path = inner.path_of(key)
            data = bytearray(fs.cat_file(path))
            data[offset] ^= 0xFF
            fs.pipe_file(path, bytes(data))

        return flip


class _CountingTier(LocalTier):
    """A LocalTier that counts the bytes its range reads return."""

    range_bytes = 0

    def read_range(self, key: ObjectKey, start: int, length: int) -> bytes:
        data = super().read_range(key, start, length)
        self.range_bytes += len(data)
        return data


class TestEncryptedTierKeys:
    """Master keys: wrong, missing, malformed, and rotated."""

    def test_wrong_master_key_names_both_key_ids_and_reads_nothing(
        self, tmp_path: Path
    ) -> None:
        """A tier opened with another master key refuses to read, naming both ids."""
        inner = LocalTier("hot", tmp_path / "tier")
        k = ObjectKey("studies/1.2.3/instance.bin")
        EncryptedTier(inner, LocalKeyProvider(KEY_A)).put_bytes(
            k, DATA, sha256=_sha256(DATA)
        )
        wrong = EncryptedTier(inner, LocalKeyProvider(KEY_B))

        message = re.escape(
            f"object {k!r} in tier 'hot' is sealed under master key "
            f"{key_id_of(KEY_A)}, but the configured master key is "
            f"{key_id_of(KEY_B)}"
        )
        for call in (wrong.read_bytes, wrong.size, wrong.open_read):
            with pytest.raises(EncryptionKeyError, match=message):
                call(k)
        with pytest.raises(EncryptionKeyError, match=message):
            wrong.read_range(k, 0, 10)

    def test_missing_key_record_is_an_error_not_an_empty_read(
        self, tmp_path: Path
    ) -> None:
        """A sealed object whose key record is gone raises, naming the record."""
        inner = LocalTier("hot", tmp_path / "tier")
        tier = EncryptedTier(inner, LocalKeyProvider(KEY_A))
        k = ObjectKey("a/b.bin")
        tier.put_bytes(k, DATA, sha256=_sha256(DATA))
        inner.delete(ObjectKey(f".dvkeys/a/b.bin/{key_id_of(KEY_A)}.dek"))
        fresh = EncryptedTier(inner, LocalKeyProvider(KEY_A))

        with pytest.raises(
            EncryptionKeyError,
            match=re.escape(
                "object 'a/b.bin' in tier 'hot' has no key record under "
                "'.dvkeys/a/b.bin/'; it cannot be decrypted"
            ),
        ):
            fresh.read_range(k, 0, 1)

    def test_plaintext_object_in_an_encrypted_tier_is_refused(
        self, tmp_path: Path
    ) -> None:
        """An object written without encryption is an integrity error, not data."""
        inner = LocalTier("hot", tmp_path / "tier")
        inner.put_bytes(ObjectKey("plain.bin"), DATA, sha256=_sha256(DATA))
        tier = EncryptedTier(inner, LocalKeyProvider(KEY_A))

        with pytest.raises(TierIntegrityError, match="is not a sealed object"):
            tier.read_bytes(ObjectKey("plain.bin"))

    def test_truncated_sealed_object_is_detected(self, tmp_path: Path) -> None:
        """Cutting the last block off a sealed object fails every whole read."""
        inner = LocalTier("hot", tmp_path / "tier")
        tier = EncryptedTier(inner, LocalKeyProvider(KEY_A), block_size=1024)
        k = ObjectKey("cut.bin")
        tier.put_bytes(k, DATA, sha256=_sha256(DATA))
        path = inner.path_of(k)
        path.write_bytes(path.read_bytes()[:-100])

        with pytest.raises(TierIntegrityError, match="sealed bytes, expected"):
            tier.read_bytes(k)
        with pytest.raises(TierIntegrityError, match="is truncated"):
            tier.read_range(k, len(DATA) - 10, 10)

    @pytest.mark.parametrize(
        ("text", "origin"),
        [("abc", "short"), ("zz" * 32, "not-hex"), ("", "empty")],
    )
    def test_malformed_key_file_is_refused_at_open(
        self, tmp_path: Path, text: str, origin: str
    ) -> None:
        """A key file that does not hold 32 bytes stops the tier from opening."""
        path = tmp_path / f"{origin}.key"
        path.write_text(text)

        with pytest.raises(EncryptionKeyError, match="is not a 256-bit key"):
            open_tier("hot", str(tmp_path / "tier"), None, {"key_file": str(path)})

    def test_missing_key_file_and_unset_variable_are_refused_at_open(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No key at all is an error naming the file or the variable."""
        monkeypatch.delenv("VAULT_TEST_KEY", raising=False)
        absent = tmp_path / "absent.key"

        with pytest.raises(EncryptionKeyError, match="cannot read master key file"):
            open_tier("hot", str(tmp_path / "t"), None, {"key_file": str(absent)})
        with pytest.raises(EncryptionKeyError, match="VAULT_TEST_KEY .* is not set"):
            open_tier("hot", str(tmp_path / "t"), None, {"key_env": "VAULT_TEST_KEY"})

    def test_key_from_environment_variable_opens_the_tier(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """key_env reads a hex master key from the environment."""
        monkeypatch.setenv("VAULT_TEST_KEY", KEY_A.hex())

        tier = open_tier(
            "hot", str(tmp_path / "t"), None, {"key_env": "VAULT_TEST_KEY"}
        )

        assert isinstance(tier, EncryptedTier)
        assert tier.keys.key_id == key_id_of(KEY_A)

    def test_rotation_rewraps_data_keys_and_leaves_sealed_objects_untouched(
        self, tmp_path: Path
    ) -> None:
        """After rewrap the new key reads everything, the old one nothing."""
        inner = LocalTier("hot", tmp_path / "tier")
        tier = EncryptedTier(inner, LocalKeyProvider(KEY_A))
        keys = [ObjectKey(f"studies/1.2.3/o{i}.bin") for i in range(5)]
        for k in keys:
            tier.put_bytes(k, DATA + k.encode(), sha256=_sha256(DATA + k.encode()))
        before = {
            k: (inner.path_of(k).stat().st_ino, _sha256(inner.read_bytes(k)))
            for k in keys
        }

        count = tier.rewrap(LocalKeyProvider(KEY_B))

        assert count == len(keys)
        after = {
            k: (inner.path_of(k).stat().st_ino, _sha256(inner.read_bytes(k)))
            for k in keys
        }
        assert after == before
        rotated = EncryptedTier(inner, LocalKeyProvider(KEY_B))
        old = EncryptedTier(inner, LocalKeyProvider(KEY_A))
        for k in keys:
            assert rotated.read_bytes(k) == DATA + k.encode()
            with pytest.raises(EncryptionKeyError, match="is sealed under master key"):
                old.read_bytes(k)
        assert sorted(inner.list(".dvkeys")) == sorted(
            f".dvkeys/{k}/{key_id_of(KEY_B)}.dek" for k in keys
        )

    def test_delete_removes_the_key_record_too(self, tmp_path: Path) -> None:
        """Deleting an object leaves no key record behind; others stay."""
        inner = LocalTier("hot", tmp_path / "tier")
        tier = EncryptedTier(inner, LocalKeyProvider(KEY_A))
        tier.put_bytes(ObjectKey("a/x"), DATA, sha256=_sha256(DATA))
        tier.put_bytes(ObjectKey("b/y"), DATA, sha256=_sha256(DATA))

        tier.delete(ObjectKey("a/x"))

        assert sorted(inner.list()) == [
            f".dvkeys/b/y/{key_id_of(KEY_A)}.dek",
            "b/y",
        ]
        assert list(tier.list()) == ["b/y"]


class TestEncryptedTierRanges:
    """A ranged read costs about the range, not the object."""

    def test_small_range_of_a_large_object_reads_at_most_two_blocks(
        self, tmp_path: Path
    ) -> None:
        """Reading 100 bytes of an 8 MiB object reads under two sealed blocks."""
        inner = _CountingTier("hot", tmp_path / "tier")
        tier = EncryptedTier(inner, LocalKeyProvider(KEY_A), block_size=64 << 10)
        data = os.urandom(8 << 20)
        k = ObjectKey("big.bin")
        tier.put_bytes(k, data, sha256=_sha256(data))
        tier.read_range(k, 0, 1)
        inner.range_bytes = 0

        assert tier.read_range(k, 5_000_000, 100) == data[5_000_000:5_000_100]
        assert inner.range_bytes <= 2 * ((64 << 10) + 16)
        assert tier.read_range(k, (3 << 20) - 50, 100) == data[(3 << 20) - 50 :][:100]

    def test_raw_objects_hold_no_plaintext(self, tmp_path: Path) -> None:
        """The bytes on disk share no 16-byte run with the plaintext."""
        inner = LocalTier("hot", tmp_path / "tier")
        tier = EncryptedTier(inner, LocalKeyProvider(KEY_A))
        plain = b"DICM" + b"DOE^JANE" * 5000
        tier.put_bytes(ObjectKey("p.bin"), plain, sha256=_sha256(plain))

        raw = (inner.root / "p.bin").read_bytes()

        assert b"DICM" not in raw
        assert b"DOE^JANE" not in raw
        assert len(raw) == HEADER_BYTES + len(plain) + 16
