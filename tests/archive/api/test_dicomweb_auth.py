"""Tokens and roles on DICOMweb routes, the same rules as on gRPC."""

from __future__ import annotations

import pytest
import requests

from dicomvault.archive import auth
from dicomvault.archive.api.dicomweb_auth import route_action
from tests.security import make_token
from tests.server import ServerProcess


def _get(
    server: ServerProcess, path: str, token: str | None = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{server.http_url}{path}", headers=headers, timeout=30)


class TestDicomwebAuth:
    def test_no_token_is_401_with_a_bearer_challenge(self, jwt_server) -> None:
        """A QIDO request without a token is refused with 401."""
        reply = _get(jwt_server, "/studies")
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert "token" in reply.text.lower()

    def test_forged_token_is_401(self, jwt_server) -> None:
        """A token signed with another key is refused."""
        forged = make_token(["reader"], secret="not-the-server-secret-at-all-32b")
        assert _get(jwt_server, "/studies", forged).status_code == 401

    def test_reader_may_search_but_not_store_or_delete(self, jwt_server) -> None:
        """A reader gets 200 for QIDO and 403 for STOW-RS and DELETE."""
        token = make_token(["reader"])
        assert _get(jwt_server, "/studies", token).status_code == 200
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "multipart/related; type=application/dicom; boundary=x",
        }
        stow = requests.post(
            f"{jwt_server.http_url}/studies", data=b"--x--", headers=headers, timeout=30
        )
        assert stow.status_code == 403
        delete = requests.delete(
            f"{jwt_server.http_url}/studies/1.2.3", headers=headers, timeout=30
        )
        assert delete.status_code == 403

    def test_auditor_may_not_read_instances(self, jwt_server) -> None:
        """The auditor role reads metadata searches, never instance bytes."""
        token = make_token(["auditor"])
        assert _get(jwt_server, "/studies", token).status_code == 200
        assert _get(jwt_server, "/studies/1.2.3", token).status_code == 403

    @pytest.mark.parametrize(
        "method, path, action",
        [
            ("GET", "/dicomweb/studies", auth.SEARCH),
            ("GET", "/dicomweb/studies/1.2/series", auth.SEARCH),
            ("GET", "/dicomweb/studies/1.2/series/1.3/instances", auth.SEARCH),
            ("GET", "/dicomweb/studies/1.2", auth.RETRIEVE),
            ("GET", "/dicomweb/studies/1.2/metadata", auth.RETRIEVE),
            ("POST", "/dicomweb/studies", auth.STORE),
            ("DELETE", "/dicomweb/studies/1.2", auth.DELETE),
        ],
    )
    def test_each_route_needs_its_action(self, method, path, action) -> None:
        """The route table maps searches, reads, stores and deletes."""
        assert route_action(method, path) == action
