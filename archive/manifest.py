"""The manifest: the self-describing record of one stored instance version.

Every instance version lives under its own prefix in a tier::

    studies/<study_uid>/<series_uid>/<sop_instance_uid>/<version>/
        frames.zarr/...   the frames, one per chunk inside shards
        envelope.bin      every byte of the original file that is not a frame
        manifest.json     this record, written last: its presence commits

The manifest lists each object with its size and SHA-256, the segment list
that rebuilds the original file, each frame's SHA-256, the pixel
description and the data set as DICOM JSON. From manifests alone the whole
index can be rebuilt. It carries a checksum of its own content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dicomvault.archive.errors import IntegrityError
from dicomvault.codecs import sha256_hex
from dicomvault.tiers import ObjectKey, make_key

FORMAT = "dicomvault.instance/1"
MANIFEST_NAME = "manifest.json"
ENVELOPE_NAME = "envelope.bin"
FRAMES_NAME = "frames.zarr"
STUDIES_ROOT = "studies"


def instance_prefix(
    study_uid: str, series_uid: str, sop_uid: str, version: str
) -> ObjectKey:
    """The key prefix of one instance version (UIDs already checked)."""
    return make_key(STUDIES_ROOT, study_uid, series_uid, sop_uid, version)


def study_prefix(study_uid: str) -> ObjectKey:
    """The key prefix of every object of a study."""
    return make_key(STUDIES_ROOT, study_uid)


@dataclass(slots=True)
class Manifest:
    """One instance version, as recorded in ``manifest.json``."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    version: str
    sha256: str
    size: int
    transfer_syntax_uid: str
    transfer_syntax_inferred: bool
    stored_at: str
    calling_application: str
    frames: dict[str, Any]
    pixel: dict[str, Any] | None
    segments: list[list[Any]]
    objects: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> ObjectKey:
        return instance_prefix(
            self.study_uid, self.series_uid, self.sop_instance_uid, self.version
        )

    def to_bytes(self) -> bytes:
        """Serialize, adding the manifest's own checksum."""
        body = {"format": FORMAT, **{k: getattr(self, k) for k in self.__slots__}}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        body["manifest_sha256"] = sha256_hex(canonical)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        """Parse and check a manifest.

        Raises
        ------
        IntegrityError
            If it is not valid JSON, not our format, or its checksum fails.
        """
        try:
            body = json.loads(data)
            recorded = body.pop("manifest_sha256")
        except (ValueError, KeyError, AttributeError):
            raise IntegrityError(
                f"manifest {where} is not a dicomvault manifest"
            ) from None
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        found = sha256_hex(canonical)
        if found != recorded:
            raise IntegrityError(
                f"manifest {where} fails its checksum: recorded {recorded}, found "
                f"{found}; run `dicomvault verify --repair`"
            )
        if body.pop("format", None) != FORMAT:
            raise IntegrityError(f"manifest {where} has an unknown format")
        return cls(**body)
