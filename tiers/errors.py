"""Errors raised by tiers.

Every backend translates its provider's errors (OSError, botocore, ...) into
these, in one table per backend, so that ``archive`` never sees a provider
exception::

    TierError
    ├── ObjectNotFoundError      (also FileNotFoundError) the key is absent
    ├── ObjectExistsError        (also FileExistsError) refused overwrite
    ├── InvalidKeyError          (also ValueError) key could leave the root
    ├── TierIntegrityError       bytes read back differ from bytes written
    ├── TierUnavailableError     transient: the backend did not answer; retry
    └── EncryptionKeyError       a sealed object's master key is missing or wrong
"""

from __future__ import annotations


class TierError(Exception):
    """Base class of every tier error."""


class ObjectNotFoundError(TierError, FileNotFoundError):
    """The object does not exist in the tier."""


class ObjectExistsError(TierError, FileExistsError):
    """A write was refused because the key already holds an object."""


class InvalidKeyError(TierError, ValueError):
    """The key is not a safe relative path inside the tier."""


class TierIntegrityError(TierError):
    """An object read back from the tier does not match its checksum."""


class TierUnavailableError(TierError):
    """The backend did not answer or answered with a transient error."""


class EncryptionKeyError(TierError):
    """The master key needed to open a sealed object is missing or wrong."""
