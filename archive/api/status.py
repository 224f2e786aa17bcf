"""The one table from archive errors to gRPC status codes and HTTP codes."""

from __future__ import annotations

import grpc

from dicomvault.archive import errors as e
from dicomvault.tiers import errors as te

# Checked in order: subclasses before their bases.
_TABLE: tuple[tuple[type[Exception], grpc.StatusCode, int], ...] = (
    (e.LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    (e.InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (e.NotFoundError, grpc.StatusCode.NOT_FOUND, 404),
    (e.ConflictError, grpc.StatusCode.ALREADY_EXISTS, 409),
    (e.RefusedError, grpc.StatusCode.FAILED_PRECONDITION, 409),
    (e.UnsupportedError, grpc.StatusCode.FAILED_PRECONDITION, 406),
    (e.IntegrityError, grpc.StatusCode.DATA_LOSS, 500),
    (e.TransientError, grpc.StatusCode.UNAVAILABLE, 503),
    (te.TierUnavailableError, grpc.StatusCode.UNAVAILABLE, 503),
    (te.InvalidKeyError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (te.TierIntegrityError, grpc.StatusCode.DATA_LOSS, 500),
    (e.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED, 401),
    (e.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED, 403),
    (e.UnsupportedMediaTypeError, grpc.StatusCode.INVALID_ARGUMENT, 415),
    (e.UnimplementedError, grpc.StatusCode.UNIMPLEMENTED, 501),
    # The archive's own master key cannot open a sealed object: the server is
    # misconfigured (wrong key file), not the client's request.
    (te.EncryptionKeyError, grpc.StatusCode.FAILED_PRECONDITION, 500),
)


def grpc_status(err: BaseException) -> grpc.StatusCode:
    """The gRPC status for an error; INTERNAL for anything unexpected."""
    for kind, status, _http in _TABLE:
        if isinstance(err, kind):
            return status
    return grpc.StatusCode.INTERNAL


def http_status(err: BaseException) -> int:
    """The HTTP status for an error; 500 for anything unexpected."""
    for kind, _status, http in _TABLE:
        if isinstance(err, kind):
            return http
    return 500
