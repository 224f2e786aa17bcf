"""Master keys that wrap the per-object data keys of an encrypted tier.

A :class:`KeyProvider` wraps and unwraps 32-byte data keys; it never sees
object bytes. :class:`LocalKeyProvider` holds one AES-256 master key read from
a key file or an environment variable. A cloud KMS plugs in by implementing
the same three members (``key_id``, ``wrap``, ``unwrap``) with the KMS's
encrypt and decrypt calls.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dicomvault.tiers.errors import EncryptionKeyError

MASTER_KEY_BYTES = 32
_NONCE_BYTES = 12


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps data keys under one master key.

    ``key_id`` names the master key (never the key itself); it is stored
    beside every wrapped data key so a reader knows which master key it needs.
    Both methods are pure functions of their inputs and safe to call from
    several threads at once.
    """

    key_id: str

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """Encrypt ``data_key``, binding it to ``context`` (the object's key)."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Decrypt a wrapped data key.

        Raises
        ------
        EncryptionKeyError
            ``wrapped`` was not made by this master key for this ``context``.
        """
        ...


def key_id_of(master_key: bytes) -> str:
    """A stable, non-secret name for a master key (16 hex digits)."""
    return hashlib.sha256(b"dicomvault master key id\0" + master_key).hexdigest()[:16]


def parse_master_key(text: str, origin: str) -> bytes:
    """Decode a master key written as 64 hex digits or as base64 of 32 bytes.

    Raises
    ------
    EncryptionKeyError
        The text is neither, or does not hold exactly 32 bytes.
    """
    text = text.strip()
    key: bytes | None = None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != MASTER_KEY_BYTES:
        raise EncryptionKeyError(
            f"master key from {origin} is not a 256-bit key: expected 64 hex "
            "digits or base64 of 32 bytes; generate one with "
            "`python -c 'import os; print(os.urandom(32).hex())'`"
        )
    return key


class LocalKeyProvider:
    """One AES-256 master key held in memory; wraps with AES-256-GCM.

    A wrapped data key is ``nonce (12 bytes) || ciphertext || tag (16)``.
    """

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise EncryptionKeyError(
                f"master key holds {len(master_key)} bytes, expected {MASTER_KEY_BYTES}"
            )
        self._aead = AESGCM(master_key)
        self.key_id = key_id_of(master_key)

    def __repr__(self) -> str:
        return f"LocalKeyProvider(key_id={self.key_id!r})"

    @classmethod
    def from_file(cls, path: Path | str) -> LocalKeyProvider:
        """Read the master key from a file (hex or base64 text).

        Raises
        ------
        EncryptionKeyError
            The file is missing, unreadable or holds no valid key.
        """
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise EncryptionKeyError(
                f"cannot read master key file {str(path)!r}: {err.strerror}; "
                "check the tier's encryption.key_file setting"
            ) from None
        return cls(parse_master_key(text, f"key file {str(path)!r}"))

    @classmethod
    def from_env(
        cls, name: str, environ: Mapping[str, str] | None = None
    ) -> LocalKeyProvider:
        """Read the master key from environment variable ``name``.

        Raises
        ------
        EncryptionKeyError
            The variable is unset or holds no valid key.
        """
        environ = os.environ if environ is None else environ
        text = environ.get(name)
        if not text:
            raise EncryptionKeyError(
                f"environment variable {name} holding the master key is not set; "
                "set it or configure encryption.key_file instead"
            )
        return cls(parse_master_key(text, f"environment variable {name}"))

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """Encrypt a data key; see :meth:`KeyProvider.wrap`."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Decrypt a data key; see :meth:`KeyProvider.unwrap`."""
        try:
            return self._aead.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], context
            )
        except (InvalidTag, ValueError):
            raise EncryptionKeyError(
                f"master key {self.key_id} cannot unwrap this data key: the key "
                "record was made with another master key or was altered"
            ) from None


def open_key_provider(
    options: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> KeyProvider:
    """Build the key provider a tier's ``encryption`` table asks for.

    ``{key_file = "/path"}`` reads a file; ``{key_env = "NAME"}`` reads an
    environment variable.

    Raises
    ------
    EncryptionKeyError
        Neither or both are given, or the key cannot be read.
    """
    unknown = set(options) - {"key_file", "key_env"}
    if unknown or len(options) != 1:
        raise EncryptionKeyError(
            f"encryption settings {sorted(options)} must hold exactly one of "
            "key_file or key_env"
        )
    if "key_file" in options:
        return LocalKeyProvider.from_file(options["key_file"])
    return LocalKeyProvider.from_env(options["key_env"], environ)
