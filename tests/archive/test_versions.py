"""The same SOP Instance UID again: duplicate, refused, or kept as a new version."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import ConflictError
from dicomvault.archive.service import Archive


def _archive(tmp_path: Path, on_conflict: str) -> Archive:
    settings = load_settings(
        overrides={
            "server.data_dir": str(tmp_path / "data"),
            "ingest.on_conflict": on_conflict,
        },
        environ={},
    )
    return Archive.open(settings)


def _other_syntax(source: Path, tmp_path: Path) -> Path:
    """The same instance re-encoded in implicit VR (a real resend case)."""
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = tmp_path / "implicit.dcm"
    ds.save_as(out, implicit_vr=True)
    return out


@pytest.fixture()
def source(corpus: Path) -> Path:
    return corpus / "ct_wg04_ct1_explicit_le.dcm"


class TestSameUidAgain:
    def test_identical_bytes_are_a_duplicate_and_write_nothing(
        self, tmp_path, source
    ) -> None:
        """Storing the same file twice answers duplicate with no new objects."""
        archive = _archive(tmp_path, "reject")
        try:
            first = archive.store_file(source)
            objects = sorted((tmp_path / "data" / "tiers").rglob("*"))
            second = archive.store_file(source)
            assert (first.outcome, second.outcome) == ("stored", "duplicate")
            assert second.reason == f"identical to stored version {first.version}"
            assert sorted((tmp_path / "data" / "tiers").rglob("*")) == objects
        finally:
            archive.close()

    def test_different_bytes_are_rejected_by_default(self, tmp_path, source) -> None:
        """Another encoding of a stored UID is refused, naming both checksums."""
        archive = _archive(tmp_path, "reject")
        try:
            first = archive.store_file(source)
            other = _other_syntax(source, tmp_path)
            other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
            with pytest.raises(
                ConflictError,
                match=(
                    f"is already stored with sha256 {first.sha256}; "
                    f"this upload has sha256 {other_sha}"
                ),
            ):
                archive.store_file(other)
            _record, stream = archive.retrieve(first.sop_instance_uid)
            assert b"".join(stream) == source.read_bytes()
        finally:
            archive.close()

    def test_version_setting_keeps_both_retrievable(self, tmp_path, source) -> None:
        """With on_conflict=version the new bytes are current, the old stay readable."""
        archive = _archive(tmp_path, "version")
        try:
            first = archive.store_file(source)
            other = _other_syntax(source, tmp_path)
            second = archive.store_file(other)
            assert second.outcome == "stored_new_version"
            assert second.version != first.version
            _r, current = archive.retrieve(first.sop_instance_uid)
            assert b"".join(current) == other.read_bytes()
            _r, old = archive.retrieve(first.sop_instance_uid, first.version)
            assert b"".join(old) == source.read_bytes()
        finally:
            archive.close()
