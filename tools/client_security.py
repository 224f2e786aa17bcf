"""Client side of TLS and bearer tokens, shared by every client command.

``--tls-ca`` turns on TLS and names the CA that signed the server's
certificate; ``--tls-cert``/``--tls-key`` present a client certificate for
mutual TLS; ``--token`` (a JWT, or ``@file`` to read it from a file) is sent
on every call as ``authorization: Bearer <token>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc


@dataclass(frozen=True, slots=True)
class Security:
    """How a client proves itself: PEM bytes of CA and client pair, a token."""

    tls_ca: bytes | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    token: str = ""

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for a plain channel."""
        if self.tls_ca is None and self.tls_cert is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.tls_ca,
            private_key=self.tls_key,
            certificate_chain=self.tls_cert,
        )


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds ``authorization: Bearer <token>`` to every call of a channel."""

    def __init__(self, token: str):
        self.header = ("authorization", f"Bearer {token}")

    def _call(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        metadata = [*(details.metadata or ()), self.header]
        new = _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        return continuation(new, request)

    intercept_unary_unary = _call
    intercept_unary_stream = _call
    intercept_stream_unary = _call
    intercept_stream_stream = _call


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--token``."""
    parser.add_argument("--tls-ca", help="PEM CA file: connect with TLS")
    parser.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--token", help="bearer token (JWT), or @FILE to read it")


def security_from_args(args: argparse.Namespace) -> Security:
    """The :class:`Security` of parsed connection options.

    Raises
    ------
    SystemExit
        A file cannot be read, or only one of --tls-cert and --tls-key.
    """

    def read(name: str | None) -> bytes | None:
        if not name:
            return None
        try:
            return Path(name).read_bytes()
        except OSError as err:
            raise SystemExit(f"error: cannot read {name}: {err.strerror}") from None

    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if bool(cert) != bool(key):
        raise SystemExit("error: --tls-cert and --tls-key go together")
    token = getattr(args, "token", None) or ""
    if token.startswith("@"):
        token = (read(token[1:]) or b"").decode().strip()
    return Security(read(getattr(args, "tls_ca", None)), read(cert), read(key), token)
