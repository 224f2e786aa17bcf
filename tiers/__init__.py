"""Where bytes live.

Terms:

- **tier**: a named place for objects (``hot``, ``warm``, ``cold``), given by
  an fsspec URL: ``file:///srv/dicomvault/hot`` or ``s3://bucket/prefix``.
- **object**: an immutable blob under a key; written once, never modified,
  removed only by an explicit delete.
- **key**: a relative POSIX path inside the tier; built with
  :func:`make_key`, which refuses anything that could leave the tier's root.

Each backend is one module (``local``, ``s3``) implementing :class:`Tier`
from ``base``; ``encrypted`` wraps any of them to seal objects at rest.
Nothing in this package knows DICOM or imports ``archive``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dicomvault.tiers.base import ObjectInfo, ObjectKey, Tier, check_key, make_key
from dicomvault.tiers.errors import (
    EncryptionKeyError,
    InvalidKeyError,
    ObjectExistsError,
    ObjectNotFoundError,
    TierError,
    TierIntegrityError,
    TierUnavailableError,
)
from dicomvault.tiers.local import LocalTier

__all__ = [
    "EncryptionKeyError",
    "InvalidKeyError",
    "LocalTier",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectKey",
    "ObjectNotFoundError",
    "Tier",
    "TierError",
    "TierIntegrityError",
    "TierUnavailableError",
    "check_key",
    "make_key",
    "open_tier",
]


def open_tier(
    name: str,
    url: str,
    storage_options: dict[str, Any] | None = None,
    encryption: Mapping[str, str] | None = None,
) -> Tier:
    """Open the tier backend that serves ``url``.

    Parameters
    ----------
    name
        The tier's configured name.
    url
        ``file:///abs/path`` (or a bare path) for a local folder,
        ``s3://bucket[/prefix]`` for S3.
    storage_options
        Passed to the fsspec file system (endpoint, keys, ...).
    encryption
        ``{"key_file": path}`` or ``{"key_env": NAME}`` to seal every object
        with :class:`~dicomvault.tiers.encrypted.EncryptedTier`; empty or
        None stores plaintext.

    Raises
    ------
    ValueError
        For a URL scheme no backend serves.
    EncryptionKeyError
        ``encryption`` is given but its master key cannot be read.
    """
    if encryption:
        from dicomvault.tiers.encrypted import EncryptedTier
        from dicomvault.tiers.master_keys import open_key_provider

        keys = open_key_provider(encryption)
        return EncryptedTier(open_tier(name, url, storage_options), keys)
    if url.startswith("file://"):
        return LocalTier(name, url[len("file://") :])
    if "://" not in url:
        return LocalTier(name, url)
    if url.startswith("s3://"):
        from dicomvault.tiers.s3 import S3Tier

        return S3Tier(name, url, storage_options or {})
    scheme = url.split("://", 1)[0]
    raise ValueError(
        f"tier {name!r}: no backend for URL scheme {scheme!r} in {url!r}; "
        "use file:// or s3://"
    )
