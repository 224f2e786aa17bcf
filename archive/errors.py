"""The archive's errors, under one base class.

Catch what you can handle; the front doors (``archive.api``) map each class
to one gRPC status and one HTTP code in a single table::

    DicomVaultError
    ├── InvalidInputError        (also ValueError) bad request or bad DICOM
    │   ├── NotDicomError            not a DICOM file at all
    │   ├── MalformedDicomError      DICOM that cannot be parsed or is inconsistent
    │   ├── UnsafeUIDError           a UID that could escape a path
    │   └── TruncatedUploadError     the upload ended before its declared end
    ├── NotFoundError            (also LookupError) unknown UID, frame or version
    ├── ConflictError            same UID already stored with other content
    ├── LimitExceededError       a configured limit was reached
    ├── RefusedError             refused by policy or by a read-only guard
    ├── UnauthenticatedError     no valid bearer token came with the request
    ├── PermissionDeniedError    the caller's roles do not allow the action
    ├── UnsupportedError         a valid request this archive cannot serve
    ├── IntegrityError           stored data does not match its checksum
    │   └── MissingObjectError       an indexed object is absent from its tier
    ├── TransientError           a backend did not answer; retry later
    ├── UnsupportedMediaTypeError  (also ValueError) a body type not accepted
    └── UnimplementedError       an operation not offered by this build

"Unreadable" is never reported as "absent": a missing object of an indexed
instance is a MissingObjectError (data loss), not a NotFoundError.
"""

from __future__ import annotations


class DicomVaultError(Exception):
    """Base class of every error the archive raises on purpose."""


class InvalidInputError(DicomVaultError, ValueError):
    """The request or the uploaded data is invalid; nothing was changed."""


class NotDicomError(InvalidInputError):
    """The uploaded bytes are not a DICOM file."""


class MalformedDicomError(InvalidInputError):
    """The upload is DICOM but cannot be parsed or is inconsistent."""


class UnsafeUIDError(InvalidInputError):
    """A UID holds characters that are not allowed in a DICOM UID."""


class TruncatedUploadError(InvalidInputError):
    """The upload stopped before the size the client declared."""


class NotFoundError(DicomVaultError, LookupError):
    """No stored instance, version or frame has this identifier."""


class ConflictError(DicomVaultError):
    """The SOP Instance UID is stored already, with different content."""


class LimitExceededError(DicomVaultError):
    """A configured limit (size, rows, time) was exceeded."""


class RefusedError(DicomVaultError):
    """The operation is refused by policy (read-only SQL, legal hold, ...)."""


class UnsupportedError(DicomVaultError):
    """A valid request that this archive cannot serve (e.g. no codec)."""


class IntegrityError(DicomVaultError):
    """Stored data does not match its recorded checksum."""


class MissingObjectError(IntegrityError):
    """An object the index refers to is absent from its tier."""


class TransientError(DicomVaultError):
    """A storage backend did not answer; the operation may be retried."""


class UnauthenticatedError(DicomVaultError):
    """The request carries no valid credentials (missing, expired, forged)."""


class PermissionDeniedError(DicomVaultError, PermissionError):
    """The caller is known, but none of its roles allows the action."""


class UnsupportedMediaTypeError(DicomVaultError, ValueError):
    """A request body of a media type this archive does not accept."""


class UnimplementedError(DicomVaultError):
    """An operation this build of the archive does not offer yet."""
