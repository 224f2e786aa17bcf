"""``dicomvault rekey``: master key rotation of a sealed tier, as a subprocess."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from dicomvault.tiers import EncryptionKeyError, LocalTier, ObjectKey
from dicomvault.tiers.encrypted import EncryptedTier
from dicomvault.tiers.master_keys import LocalKeyProvider

DICOMVAULT = Path(sys.executable).parent / "dicomvault"
OLD, NEW = bytes(range(32)), bytes(range(50, 82))
DATA = b"sealed frame bytes " * 1000


def _config(tmp_path: Path, encrypted: bool) -> Path:
    (tmp_path / "old.key").write_text(OLD.hex())
    (tmp_path / "new.key").write_text(NEW.hex())
    encryption = f'encryption = {{ key_file = "{tmp_path / "old.key"}" }}\n'
    config = tmp_path / "dicomvault.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[tiers.hot]\nurl = "{tmp_path / "tier"}"\n'
        + (encryption if encrypted else "")
    )
    return config


def _rekey(config: Path, new_key: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(DICOMVAULT), "rekey", "--config", str(config), "--tier", "hot"]
    argv += ["--new-key-file", str(new_key)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


class TestRekeyCommand:
    """rekey moves every key record to the new master key."""

    def test_rekey_makes_the_new_key_read_and_the_old_key_fail(
        self, tmp_path: Path
    ) -> None:
        """After rekey the objects open with the new key only; bytes unchanged."""
        config = _config(tmp_path, encrypted=True)
        inner = LocalTier("hot", tmp_path / "tier")
        keys = [ObjectKey(f"studies/1.2/{i}.bin") for i in range(3)]
        sealed = EncryptedTier(inner, LocalKeyProvider(OLD))
        for k in keys:
            sealed.put_bytes(k, DATA, sha256=hashlib.sha256(DATA).hexdigest())
        raw_before = {k: inner.read_bytes(k) for k in keys}

        done = _rekey(config, tmp_path / "new.key")

        assert done.returncode == 0, done.stderr
        assert "re-wrapped 3 data key(s) of tier 'hot'" in done.stdout
        assert {k: inner.read_bytes(k) for k in keys} == raw_before
        fresh = EncryptedTier(inner, LocalKeyProvider(NEW))
        assert [fresh.read_bytes(k) for k in keys] == [DATA] * 3
        with pytest.raises(EncryptionKeyError, match="sealed under master key"):
            EncryptedTier(inner, LocalKeyProvider(OLD)).read_bytes(keys[0])

    def test_rekey_of_a_plaintext_tier_is_refused(self, tmp_path: Path) -> None:
        """A tier without encryption has nothing to rotate; exit status 2."""
        config = _config(tmp_path, encrypted=False)

        done = _rekey(config, tmp_path / "new.key")

        assert done.returncode == 2
        assert "tier 'hot' has no encryption setting to rotate" in done.stdout
