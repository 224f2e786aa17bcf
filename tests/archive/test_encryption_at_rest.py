"""Encryption at rest through the whole archive, on disk and on S3.

Real corpus files are stored into an archive whose only tier is sealed; the
raw objects are then read behind the archive's back and must hold no DICOM.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomvault.archive.config import load_settings
from dicomvault.archive.service import Archive
from dicomvault.tiers import EncryptionKeyError

from ..s3server import SeaweedServer

KEY_HEX = "8f" * 32
OTHER_KEY_HEX = "13" * 32
# Small enough to run in seconds, varied enough to cover native, encapsulated
# and multi-frame objects.
SAMPLE = 4


def _sample(corpus: Path) -> list[Path]:
    with open(corpus / "MANIFEST.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["pydicom_decodes"] == "yes"]
    rows.sort(key=lambda r: (r["frames"] == "1", r["transfer_syntax_name"]))
    return [corpus / r["file"] for r in rows[:SAMPLE]]


def _identifiers(path: Path) -> set[bytes]:
    """Byte strings that would betray the instance if found in storage."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    found = {b"DICM"}
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID"):
        value = str(ds.get(keyword, "") or "")
        if len(value) >= 4:
            found.add(value.encode())
    return found


def _open(tmp_path: Path, url: str, options: dict[str, Any], key_hex: str) -> Archive:
    key_file = tmp_path / f"{key_hex[:4]}.key"
    key_file.write_text(key_hex)
    config = tmp_path / "dicomvault.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[tiers.hot]\nurl = "{url}"\n'
        f"storage_options = {_toml_inline(options)}\n"
        f'encryption = {{ key_file = "{key_file}" }}\n'
    )
    return Archive.open(load_settings(config, environ={}))


def _toml_inline(value: Any) -> str:
    """A TOML inline value for the storage options (tables, strings, numbers)."""
    if isinstance(value, dict):
        items = ", ".join(f"{k} = {_toml_inline(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


class _AtRest:
    """Store, scan raw storage, read back bit-exact; wrong key refuses."""

    def raw_objects(self) -> Iterator[tuple[str, bytes]]:
        raise NotImplementedError

    def test_raw_objects_hold_no_dicom_and_retrieval_is_bit_exact(
        self, archive: Archive, corpus: Path
    ) -> None:
        """No raw object holds DICM or an identifier; every file comes back."""
        files = _sample(corpus)
        outcomes = [archive.store_file(path) for path in files]
        secrets = set().union(*(_identifiers(p) for p in files))

        raw = list(self.raw_objects())

        assert len(raw) > len(files)
        for key, data in raw:
            leaked = [s for s in secrets if s in data]
            assert leaked == [], f"{key} holds {leaked}"
        for path, outcome in zip(files, outcomes):
            _record, stream = archive.retrieve(outcome.sop_instance_uid)
            assert hashlib.sha256(b"".join(stream)).digest() == (
                hashlib.sha256(path.read_bytes()).digest()
            )
            frames = list(archive.frames(outcome.sop_instance_uid, [1], False))
            assert len(frames) == 1 and frames[0].data

    def test_archive_reopened_with_another_key_refuses_to_read(
        self, archive: Archive, corpus: Path, reopen: Any
    ) -> None:
        """Another master key gets a clear key error, never empty bytes."""
        outcome = archive.store_file(_sample(corpus)[0])
        archive.close()

        other = reopen(OTHER_KEY_HEX)
        try:
            with pytest.raises(EncryptionKeyError, match="is sealed under master key"):
                _record, stream = other.retrieve(outcome.sop_instance_uid)
                b"".join(stream)
        finally:
            other.close()


class TestEncryptionAtRestLocal(_AtRest):
    """A sealed local tier."""

    @pytest.fixture
    def archive(self, tmp_path: Path) -> Iterator[Archive]:
        self.root = tmp_path / "tier"
        archive = _open(tmp_path, str(self.root), {}, KEY_HEX)
        yield archive
        archive.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Any:
        return lambda key_hex: _open(tmp_path, str(self.root), {}, key_hex)

    def raw_objects(self) -> Iterator[tuple[str, bytes]]:
        for path in self.root.rglob("*"):
            if path.is_file():
                yield str(path.relative_to(self.root)), path.read_bytes()


class TestEncryptionAtRestS3(_AtRest):
    """A sealed S3 tier on SeaweedFS."""

    @pytest.fixture
    def archive(
        self, tmp_path: Path, seaweed: SeaweedServer, s3_tier_url: str
    ) -> Iterator[Archive]:
        self.fs = seaweed.filesystem()
        self.url = s3_tier_url
        self.options = seaweed.storage_options()
        archive = _open(tmp_path, s3_tier_url, self.options, KEY_HEX)
        yield archive
        archive.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Any:
        return lambda key_hex: _open(tmp_path, self.url, self.options, key_hex)

    def raw_objects(self) -> Iterator[tuple[str, bytes]]:
        root = self.url.removeprefix("s3://")
        self.fs.invalidate_cache()
        for path in self.fs.find(root):
            yield path, self.fs.cat_file(path)
