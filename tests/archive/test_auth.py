"""Tests for archive/auth.py and the security settings of archive/config.py."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dicomvault.archive.auth import (
    ANONYMOUS,
    ROLES,
    Authenticator,
    Principal,
    authenticate,
    authorize,
)
from dicomvault.archive.config import ConfigError, load_settings
from dicomvault.archive.errors import PermissionDeniedError, UnauthenticatedError
from tests.security import HS256_SECRET, make_token


@pytest.fixture
def hs256() -> Authenticator:
    return Authenticator("HS256", HS256_SECRET.encode())


class TestAuthenticate:
    def test_valid_hs256_token_gives_subject_and_roles(
        self, hs256: Authenticator
    ) -> None:
        """A good HS256 token yields its subject and known roles."""
        token = make_token(["reader", "auditor", "janitor"], subject="bob")
        principal = hs256.authenticate(f"Bearer {token}")
        assert principal == Principal("bob", ("reader", "auditor"))

    def test_es256_token_is_checked_with_the_public_key_only(self) -> None:
        """ES256: signed with the private key, validated with the public key."""
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        token = make_token(["writer"], secret=key, algorithm="ES256")  # type: ignore[arg-type]
        principal = Authenticator("ES256", public).authenticate(f"bearer {token}")
        assert principal.roles == ("writer",)

    def test_from_settings_reads_an_rs256_public_key_file(self, tmp_path: Path) -> None:
        """RS256 with a PEM public key file from the settings validates tokens."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = tmp_path / "jwt.pub"
        pem.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        settings = load_settings(
            environ={
                "DICOMVAULT_SECURITY__AUTH": "jwt",
                "DICOMVAULT_SECURITY__JWT_ALGORITHM": "RS256",
                "DICOMVAULT_SECURITY__JWT_KEY_FILE": str(pem),
            }
        )
        authenticator = Authenticator.from_settings(settings)
        assert authenticator is not None
        token = make_token(["admin"], secret=key, algorithm="RS256")  # type: ignore[arg-type]
        assert authenticator.authenticate(f"Bearer {token}").roles == ("admin",)

    def test_open_mode_makes_every_caller_anonymous(self) -> None:
        """Without an authenticator any header, or none, gives ANONYMOUS."""
        assert authenticate(None, None) == ANONYMOUS
        assert authenticate(None, "Bearer whatever") == ANONYMOUS

    def test_missing_header_is_unauthenticated(self, hs256: Authenticator) -> None:
        """No header at all is refused with a hint on the expected form."""
        with pytest.raises(UnauthenticatedError, match="^no bearer token: send"):
            hs256.authenticate(None)

    def test_basic_scheme_is_refused(self, hs256: Authenticator) -> None:
        """Only the Bearer scheme is accepted."""
        with pytest.raises(UnauthenticatedError, match="is not a bearer token"):
            hs256.authenticate("Basic YWxpY2U6c2VjcmV0")

    def test_expired_token_is_refused(self, hs256: Authenticator) -> None:
        """A token past its exp is refused and says so."""
        token = make_token(["reader"], expires_in=-60)
        with pytest.raises(UnauthenticatedError, match="has expired; obtain a new"):
            hs256.authenticate(f"Bearer {token}")

    def test_token_signed_with_another_key_is_refused(
        self, hs256: Authenticator
    ) -> None:
        """A forged signature is refused, naming the expected algorithm."""
        token = make_token(["admin"], secret="another-secret-of-32-bytes-or-more!!")
        with pytest.raises(
            UnauthenticatedError,
            match=r"refused \(InvalidSignatureError: .*\); expected a HS256 token",
        ):
            hs256.authenticate(f"Bearer {token}")

    def test_unsigned_token_is_refused(self, hs256: Authenticator) -> None:
        """alg=none tokens never pass."""
        token = jwt.encode(
            {"sub": "eve", "roles": ["admin"], "exp": 2**40}, None, "none"
        )
        with pytest.raises(UnauthenticatedError, match="the bearer token was refused"):
            hs256.authenticate(f"Bearer {token}")

    def test_token_without_exp_is_refused(self, hs256: Authenticator) -> None:
        """exp is required: a token that never expires is refused."""
        token = jwt.encode({"sub": "eve", "roles": ["admin"]}, HS256_SECRET, "HS256")
        with pytest.raises(UnauthenticatedError, match="MissingRequiredClaimError"):
            hs256.authenticate(f"Bearer {token}")


class TestAuthorize:
    @pytest.mark.parametrize(
        ("role", "action"),
        [
            ("reader", "instance.retrieve"),
            ("writer", "instance.store"),
            ("admin", "index.rebuild"),
            ("auditor", "sql.audit"),
        ],
    )
    def test_role_grants_its_action(self, role: str, action: str) -> None:
        """Each role may perform the actions the table grants it."""
        authorize(Principal("u", (role,)), action)

    def test_reader_may_not_store(self) -> None:
        """A reader asking to store is refused with the roles that would do."""
        with pytest.raises(
            PermissionDeniedError,
            match=r"^'u' with roles \['reader'\] may not perform instance.store; "
            r"it needs one of the roles \['admin', 'writer'\]$",
        ):
            authorize(Principal("u", ("reader",)), "instance.store")

    def test_only_auditor_reads_the_audit_table(self) -> None:
        """sql.audit belongs to the auditor role alone."""
        for role in ROLES:
            allowed = Principal("u", (role,)).may("sql.audit")
            assert allowed == (role == "auditor")


class TestSecuritySettings:
    def test_open_server_on_a_public_address_is_refused(self) -> None:
        """auth none plus a non-loopback bind address is a settings error."""
        with pytest.raises(
            ConfigError,
            match=r"^refusing to serve on 0\.0\.0\.0, which is not a loopback "
            r"address, without authentication",
        ):
            load_settings(environ={"DICOMVAULT_SERVER__GRPC_HOST": "0.0.0.0"})

    def test_public_address_with_jwt_is_accepted(self, tmp_path: Path) -> None:
        """With tokens required any address may be bound."""
        key = tmp_path / "jwt.key"
        key.write_text(HS256_SECRET)
        settings = load_settings(
            environ={
                "DICOMVAULT_SERVER__GRPC_HOST": "0.0.0.0",
                "DICOMVAULT_SECURITY__AUTH": "jwt",
                "DICOMVAULT_SECURITY__JWT_KEY_FILE": str(key),
            }
        )
        assert settings.get("security.auth") == "jwt"

    def test_jwt_without_key_file_is_refused(self) -> None:
        """auth jwt needs a key file."""
        with pytest.raises(ConfigError, match="security.jwt_key_file is empty"):
            load_settings(environ={"DICOMVAULT_SECURITY__AUTH": "jwt"})

    def test_missing_key_file_is_named(self, tmp_path: Path) -> None:
        """A key file that does not exist is named in the error."""
        with pytest.raises(
            ConfigError, match=r"security.tls_cert_file: '.*nope.crt' is not a readable"
        ):
            load_settings(
                environ={
                    "DICOMVAULT_SECURITY__TLS_CERT_FILE": str(tmp_path / "nope.crt")
                }
            )

    def test_certificate_without_key_is_refused(self, tmp_path: Path) -> None:
        """TLS needs both the certificate and its key."""
        cert = tmp_path / "srv.crt"
        cert.write_text("x")
        with pytest.raises(ConfigError, match="must be set together"):
            load_settings(environ={"DICOMVAULT_SECURITY__TLS_CERT_FILE": str(cert)})
