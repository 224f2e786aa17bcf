"""Test certificates and tokens, made fresh with ``cryptography`` and PyJWT."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HS256_SECRET = "test-secret-of-at-least-32-bytes-long!"


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True, slots=True)
class Pki:
    """A CA and the PEM files it signed, in one folder."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("dicomvault test CA"))
        .issuer_name(_name("dicomvault test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [
                        ExtendedKeyUsageOID.SERVER_AUTH
                        if server
                        else ExtendedKeyUsageOID.CLIENT_AUTH
                    ]
                ),
                False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    pki = Pki(
        *(folder / n for n in ("ca.crt", "srv.crt", "srv.key", "cl.crt", "cl.key"))
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert, key = leaf("127.0.0.1", server=True)
    pki.server_cert.write_bytes(cert)
    pki.server_key.write_bytes(key)
    cert, key = leaf("test client", server=False)
    pki.client_cert.write_bytes(cert)
    pki.client_key.write_bytes(key)
    return pki


def make_token(
    roles: list[str],
    subject: str = "alice",
    secret: str | bytes = HS256_SECRET,
    algorithm: str = "HS256",
    expires_in: float = 600,
) -> str:
    """A signed JWT for ``subject`` with ``roles`` (negative expiry: expired)."""
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": subject,
        "roles": roles,
        "iat": now,
        "exp": now + dt.timedelta(seconds=expires_in),
    }
    return jwt.encode(claims, secret, algorithm=algorithm)


def jwt_env(key_file: Path) -> dict[str, str]:
    """Environment settings for a server that requires HS256 tokens."""
    return {
        "DICOMVAULT_SECURITY__AUTH": "jwt",
        "DICOMVAULT_SECURITY__JWT_KEY_FILE": str(key_file),
    }
