"""Tests for archive/api/security.py: tokens, roles and TLS on a live server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dicomvault.proto import (
    admin_pb2,
    admin_pb2_grpc,
    archive_pb2,
    archive_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)
from dicomvault.tools.client import Client, connect
from dicomvault.tools.client_security import Security
from tests.security import Pki, jwt_env, make_pki, make_token
from tests.server import ServerProcess

UID = "1.2.826.0.1.3680043.8.498.1"

# One call per RPC of every service, each consuming the whole answer.
CALLS: dict[str, Callable[[grpc.Channel], Any]] = {
    "Store": lambda ch: archive_pb2_grpc.ArchiveStub(ch).Store(
        iter([archive_pb2.StoreRequest(start=archive_pb2.StoreStart(label="x"))])
    ),
    "Retrieve": lambda ch: list(
        archive_pb2_grpc.ArchiveStub(ch).Retrieve(
            archive_pb2.RetrieveRequest(sop_instance_uid=UID)
        )
    ),
    "GetFrames": lambda ch: list(
        archive_pb2_grpc.ArchiveStub(ch).GetFrames(
            archive_pb2.GetFramesRequest(sop_instance_uid=UID)
        )
    ),
    "Search": lambda ch: archive_pb2_grpc.ArchiveStub(ch).Search(
        archive_pb2.SearchRequest(level=archive_pb2.STUDY)
    ),
    "Sql": lambda ch: list(
        query_pb2_grpc.QueryStub(ch).Sql(query_pb2.SqlRequest(sql="SELECT 1"))
    ),
    "RebuildIndex": lambda ch: admin_pb2_grpc.AdminStub(ch).RebuildIndex(
        admin_pb2.RebuildIndexRequest()
    ),
    "Verify": lambda ch: admin_pb2_grpc.AdminStub(ch).Verify(admin_pb2.VerifyRequest()),
    "ServerReflectionInfo": lambda ch: list(
        reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    ),
}
# RPC -> a role that may call it and a role that may not (None: every role may).
ROLES: dict[str, tuple[str, str | None]] = {
    "Store": ("writer", "reader"),
    "Retrieve": ("reader", "auditor"),
    "GetFrames": ("reader", "auditor"),
    "Search": ("reader", None),
    "Sql": ("auditor", None),
    "RebuildIndex": ("admin", "writer"),
    "Verify": ("admin", "reader"),
    "ServerReflectionInfo": ("auditor", None),
}


def channel(server: ServerProcess, token: str = "") -> grpc.Channel:
    return connect(server.address, Security(token=token))


def status_of(call: Callable[[grpc.Channel], Any], ch: grpc.Channel) -> grpc.StatusCode:
    try:
        call(ch)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


class TestTokens:
    @pytest.mark.parametrize("rpc", sorted(CALLS))
    def test_every_rpc_without_token_is_unauthenticated(
        self, jwt_server: ServerProcess, rpc: str
    ) -> None:
        """No token: UNAUTHENTICATED, whatever the RPC."""
        with channel(jwt_server) as ch:
            assert status_of(CALLS[rpc], ch) == grpc.StatusCode.UNAUTHENTICATED

    @pytest.mark.parametrize("rpc", sorted(r for r in ROLES if ROLES[r][1]))
    def test_rpc_with_wrong_role_is_permission_denied(
        self, jwt_server: ServerProcess, rpc: str
    ) -> None:
        """A valid token without the needed role: PERMISSION_DENIED."""
        token = make_token([ROLES[rpc][1] or ""])
        with channel(jwt_server, token) as ch:
            assert status_of(CALLS[rpc], ch) == grpc.StatusCode.PERMISSION_DENIED

    @pytest.mark.parametrize("rpc", sorted(CALLS))
    def test_rpc_with_right_role_passes_the_gate(
        self, jwt_server: ServerProcess, rpc: str
    ) -> None:
        """The right role reaches the handler (its own answer, never an auth code)."""
        with channel(jwt_server, make_token([ROLES[rpc][0]])) as ch:
            code = status_of(CALLS[rpc], ch)
        expected = {"Retrieve": grpc.StatusCode.NOT_FOUND}
        expected["GetFrames"] = grpc.StatusCode.NOT_FOUND
        assert code == expected.get(rpc, grpc.StatusCode.OK)

    def test_permission_denied_message_names_the_needed_roles(
        self, jwt_server: ServerProcess
    ) -> None:
        """The refusal says who was refused and which roles would do."""
        with channel(jwt_server, make_token(["reader"], subject="rita")) as ch:
            with pytest.raises(grpc.RpcError) as info:
                CALLS["Verify"](ch)
        assert info.value.details() == (
            "'rita' with roles ['reader'] may not perform archive.verify; "
            "it needs one of the roles ['admin']"
        )

    @pytest.mark.parametrize(
        ("token", "detail"),
        [
            (make_token(["admin"], expires_in=-5), "the bearer token has expired"),
            (
                make_token(["admin"], secret="forged-secret-that-is-32-bytes-long!"),
                "the bearer token was refused (InvalidSignatureError",
            ),
            ("not.a.jwt", "the bearer token was refused (DecodeError"),
        ],
        ids=["expired", "forged", "garbage"],
    )
    def test_bad_token_is_refused(
        self, jwt_server: ServerProcess, token: str, detail: str
    ) -> None:
        """Expired, forged and malformed tokens are UNAUTHENTICATED."""
        with channel(jwt_server, token) as ch:
            with pytest.raises(grpc.RpcError) as info:
                CALLS["Search"](ch)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details().startswith(detail)

    def test_health_answers_without_token(self, jwt_server: ServerProcess) -> None:
        """The health service stays open for probes."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with channel(jwt_server) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest()
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_env(pki: Pki, mutual: bool) -> dict[str, str]:
    env = {
        "DICOMVAULT_SECURITY__TLS_CERT_FILE": str(pki.server_cert),
        "DICOMVAULT_SECURITY__TLS_KEY_FILE": str(pki.server_key),
    }
    if mutual:
        env["DICOMVAULT_SECURITY__TLS_CLIENT_CA_FILE"] = str(pki.ca)
    return env


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, key_file: Path
) -> Iterator[ServerProcess]:
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    data = tmp_path_factory.mktemp("tls-srv") / "data"
    env = {**jwt_env(key_file), **tls_env(pki, mutual=False)}
    with ServerProcess(data, env=env, credentials=creds) as proc:
        yield proc


@pytest.fixture(scope="module")
def mtls_server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, key_file: Path
) -> Iterator[ServerProcess]:
    creds = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(),
        pki.client_key.read_bytes(),
        pki.client_cert.read_bytes(),
    )
    data = tmp_path_factory.mktemp("mtls-srv") / "data"
    env = {**jwt_env(key_file), **tls_env(pki, mutual=True)}
    with ServerProcess(data, env=env, credentials=creds) as proc:
        yield proc


class TestTls:
    def test_client_with_ca_and_token_completes_a_call(
        self, tls_server: ServerProcess, pki: Pki
    ) -> None:
        """TLS handshake against the test CA, then an authorized call."""
        security = Security(tls_ca=pki.ca.read_bytes(), token=make_token(["reader"]))
        client = Client(tls_server.address, security)
        try:
            assert client.search(archive_pb2.STUDY, {}) == []
        finally:
            client.close()

    def test_plain_client_cannot_talk_to_a_tls_server(
        self, tls_server: ServerProcess
    ) -> None:
        """A client without TLS gets no answer from a TLS port."""
        with channel(tls_server, make_token(["reader"])) as ch:
            assert status_of(CALLS["Search"], ch) == grpc.StatusCode.UNAVAILABLE

    def test_cli_sql_with_tls_ca_and_token_prints_the_result(
        self, tls_server: ServerProcess, pki: Pki
    ) -> None:
        """`dicomvault sql --tls-ca --token @file` works against the TLS server."""
        token_file = pki.ca.parent / "token"
        token_file.write_text(make_token(["reader"]))
        args = ["sql", "SELECT 41 + 1 AS answer", "--format", "csv"]
        args += ["--server", tls_server.address, "--tls-ca", str(pki.ca)]
        args += ["--token", f"@{token_file}"]
        done = subprocess.run(
            [sys.executable, "-m", "dicomvault.tools.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stdout.split()) == (0, ["answer", "42"])

    def test_cli_without_token_reports_unauthenticated(
        self, tls_server: ServerProcess, pki: Pki
    ) -> None:
        """The CLI prints the status and the server's hint, exit code 1."""
        args = ["ls", "--server", tls_server.address, "--tls-ca", str(pki.ca)]
        done = subprocess.run(
            [sys.executable, "-m", "dicomvault.tools.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert done.stderr.startswith("error: UNAUTHENTICATED: no bearer token: send")


class TestMutualTls:
    def test_client_without_certificate_is_refused_at_the_handshake(
        self, mtls_server: ServerProcess, pki: Pki
    ) -> None:
        """No client certificate: the call never reaches the server."""
        security = Security(tls_ca=pki.ca.read_bytes(), token=make_token(["reader"]))
        with connect(mtls_server.address, security) as ch:
            code = status_of(lambda c: CALLS["Search"](c), ch)
        assert code == grpc.StatusCode.UNAVAILABLE

    def test_client_with_certificate_and_token_is_served(
        self, mtls_server: ServerProcess, pki: Pki
    ) -> None:
        """Client certificate plus token: the call succeeds."""
        security = Security(
            pki.ca.read_bytes(),
            pki.client_cert.read_bytes(),
            pki.client_key.read_bytes(),
            make_token(["reader"]),
        )
        with connect(mtls_server.address, security) as ch:
            assert status_of(CALLS["Search"], ch) == grpc.StatusCode.OK


class TestExposure:
    def test_open_server_on_all_interfaces_refuses_to_start(
        self, tmp_path: Path
    ) -> None:
        """`serve --grpc-host 0.0.0.0` without auth exits 2 with the reason."""
        args = ["serve", "--data", str(tmp_path / "d"), "--grpc-host", "0.0.0.0"]
        done = subprocess.run(
            [sys.executable, "-m", "dicomvault.tools.cli", *args, "--grpc-port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.startswith(
            "error: refusing to serve on 0.0.0.0, which is not a loopback address, "
            "without authentication (security.auth is 'none')"
        )

    def test_open_loopback_server_says_so_in_one_warning(self, tmp_path: Path) -> None:
        """The default open server logs exactly one WARNING about it."""
        server = ServerProcess(tmp_path / "data")
        with server:
            with channel(server) as ch:
                assert status_of(CALLS["Search"], ch) == grpc.StatusCode.OK
        warnings = [
            line
            for line in server.log_path.read_text().splitlines()
            if " WARNING " in line
        ]
        assert len(warnings) == 1
        assert "event=auth.open address=127.0.0.1" in warnings[0]
