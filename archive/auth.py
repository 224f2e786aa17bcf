"""Who is calling and what they may do: bearer tokens, roles and actions.

Terms:

- **principal**: the authenticated caller, its subject (the token's ``sub``)
  and its roles.
- **role**: ``reader``, ``writer``, ``admin`` or ``auditor``, carried in the
  token's ``roles`` claim.
- **action**: one named thing a front door asks the archive to do
  (``instance.retrieve``, ``sql.query``, ...). Each role grants a set of
  actions; :data:`ROLE_ACTIONS` is the one table.

Both front doors call the same two functions: :func:`authenticate` with the
value of the ``authorization`` header (gRPC metadata or HTTP), then
:func:`authorize` with the action of the request. Tokens are JSON Web Tokens
signed with HS256 (a shared secret) or RS256/ES256 (the server holds only the
public key), validated by PyJWT: signature, ``exp`` (required), ``sub``
(required), and ``iss``/``aud`` when configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from dicomvault.archive.config import Settings
from dicomvault.archive.errors import PermissionDeniedError, UnauthenticatedError

READER, WRITER, ADMIN, AUDITOR = "reader", "writer", "admin", "auditor"
ROLES = (READER, WRITER, ADMIN, AUDITOR)

STORE = "instance.store"
RETRIEVE = "instance.retrieve"
SEARCH = "instance.search"
SQL_QUERY = "sql.query"
SQL_AUDIT = "sql.audit"
INDEX_REBUILD = "index.rebuild"
ARCHIVE_VERIFY = "archive.verify"
DESCRIBE = "service.describe"
# Administration beyond the index: lifecycle, holds, replication, de-identified
# copies; and deletion of instances.
ADMINISTER = "archive.administer"
DELETE = "instance.delete"

_READ = frozenset({RETRIEVE, SEARCH, SQL_QUERY, DESCRIBE})
ROLE_ACTIONS: Mapping[str, frozenset[str]] = {
    READER: _READ,
    WRITER: _READ | {STORE},
    ADMIN: _READ | {STORE, INDEX_REBUILD, ARCHIVE_VERIFY, ADMINISTER, DELETE},
    # The auditor reads the audit trail and the metadata tables it refers to,
    # but no pixel data and no instance bytes.
    AUDITOR: frozenset({SEARCH, SQL_QUERY, SQL_AUDIT, DESCRIBE}),
}
ALGORITHMS = ("HS256", "RS256", "ES256")
BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token subject and its roles."""

    subject: str
    roles: tuple[str, ...]

    def may(self, action: str) -> bool:
        """True when one of the roles grants ``action``."""
        return any(action in ROLE_ACTIONS.get(role, ()) for role in self.roles)


# With ``security.auth = "none"`` every caller is this principal. The server
# refuses that mode on any address but loopback (see ``config``).
ANONYMOUS = Principal("anonymous", ROLES)


def authorize(principal: Principal, action: str) -> None:
    """Check that ``principal`` may perform ``action``.

    Raises
    ------
    PermissionDeniedError
        No role of the principal grants the action.
    """
    if principal.may(action):
        return
    allowed = sorted(r for r, actions in ROLE_ACTIONS.items() if action in actions)
    raise PermissionDeniedError(
        f"{principal.subject!r} with roles {list(principal.roles)} may not "
        f"perform {action}; it needs one of the roles {allowed}"
    )


def authenticate(
    authenticator: Authenticator | None, authorization: str | None
) -> Principal:
    """The principal of a request, for any front door.

    Parameters
    ----------
    authenticator
        From :meth:`Authenticator.from_settings`; None when ``security.auth``
        is ``none``, and then every caller is :data:`ANONYMOUS`.
    authorization
        The ``authorization`` header value (gRPC metadata or HTTP), or None.

    Raises
    ------
    UnauthenticatedError
        See :meth:`Authenticator.authenticate`.
    """
    if authenticator is None:
        return ANONYMOUS
    return authenticator.authenticate(authorization)


class Authenticator:
    """Validates bearer tokens against the configured key.

    Parameters
    ----------
    algorithm
        ``HS256``, ``RS256`` or ``ES256``.
    key
        The HS256 secret, or the PEM public key for RS256/ES256.
    issuer, audience
        Required ``iss`` and ``aud`` claims; empty to not check.
    """

    def __init__(
        self, algorithm: str, key: bytes, issuer: str = "", audience: str = ""
    ):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm}")
        self.algorithm = algorithm
        self.key: Any = key
        if algorithm != "HS256":
            self.key = jwt.algorithms.get_default_algorithms()[algorithm].prepare_key(
                key
            )
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        """The authenticator of ``security.*``, or None when auth is off."""
        if settings.get("security.auth") == "none":
            return None
        key = Path(settings.get("security.jwt_key_file")).read_bytes()
        if settings.get("security.jwt_algorithm") == "HS256":
            key = key.strip()
        return cls(
            settings.get("security.jwt_algorithm"),
            key,
            settings.get("security.jwt_issuer"),
            settings.get("security.jwt_audience"),
        )

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``authorization`` header value.

        Parameters
        ----------
        authorization
            ``Bearer <jwt>``, as sent in gRPC metadata or the HTTP header.

        Raises
        ------
        UnauthenticatedError
            No header, not a bearer token, or a token that is expired,
            forged, malformed or lacks ``sub``.
        """
        if not authorization:
            raise UnauthenticatedError(
                "no bearer token: send the header 'authorization: Bearer <token>'"
            )
        if authorization[: len(BEARER)].lower() != BEARER:
            raise UnauthenticatedError(
                "the authorization header is not a bearer token; "
                "expected 'Bearer <token>'"
            )
        token = authorization[len(BEARER) :].strip()
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                issuer=self.issuer or None,
                audience=self.audience or None,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": bool(self.audience),
                },
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError(
                "the bearer token has expired; obtain a new one"
            ) from None
        except jwt.InvalidTokenError as err:
            raise UnauthenticatedError(
                f"the bearer token was refused ({type(err).__name__}: {err}); "
                f"expected a {self.algorithm} token signed with the configured key"
            ) from None
        roles = claims.get("roles", [])
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list):
            raise UnauthenticatedError(
                "the token's roles claim must be a list of role names, "
                f"found {type(roles).__name__}"
            )
        known = tuple(str(r) for r in roles if r in ROLES)
        return Principal(str(claims["sub"]), known)


__all__ = [
    "ANONYMOUS",
    "ROLES",
    "ROLE_ACTIONS",
    "Authenticator",
    "Principal",
    "authenticate",
    "authorize",
]
