"""Tokens and roles on DICOMweb routes, the same rules as on gRPC."""

from __future__ import annotations

import time

import pytest
import requests

from dicomvault.archive import auth
from dicomvault.archive.api.dicomweb_auth import route_action
from dicomvault.tools.client import Client
from dicomvault.tools.client_security import Security
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


class TestDicomwebAudit:
    def test_requests_and_refusals_are_audited_without_patient_data(
        self, jwt_server
    ) -> None:
        """A QIDO search, a refused store and a bad token each leave an audit row."""
        reader = make_token(["reader"], subject="dw-reader")
        name_query = {"PatientName": "Doe^Jane*"}
        requests.get(
            f"{jwt_server.http_url}/studies",
            params=name_query,
            headers={"Authorization": f"Bearer {reader}"},
            timeout=30,
        )
        headers = {
            "Authorization": f"Bearer {reader}",
            "Content-Type": "multipart/related; type=application/dicom; boundary=x",
        }
        requests.post(
            f"{jwt_server.http_url}/studies", data=b"--x--", headers=headers, timeout=30
        )
        _get(jwt_server, "/studies/1.2.3/metadata", "forged.token.value")

        auditor = Client(
            jwt_server.address, Security(token=make_token(["auditor"], subject="aud"))
        )
        deadline = time.monotonic() + 10
        rows: list[list[object]] = []
        while time.monotonic() < deadline:
            _cols, rows = auditor.sql(
                "SELECT request, user_id, event_id_code, event_action_code, "
                "event_outcome_indicator, study_uid, participant_object_query_sha256 "
                "FROM audit_events WHERE request LIKE 'DICOMweb%' "
                "ORDER BY event_date_time"
            )
            # Rows reach the SQL table from a background thread: wait for ours.
            by_key = {(r[1], r[0], r[5]): r for r in rows}
            wanted = {
                ("dw-reader", "DICOMweb GET", ""),
                ("dw-reader", "DICOMweb POST", ""),
                ("unknown", "DICOMweb GET", "1.2.3"),
            }
            if wanted <= set(by_key):
                break
            time.sleep(0.3)
        search = by_key[("dw-reader", "DICOMweb GET", "")]
        assert search[2:5] == ["110112", "E", 0] and search[6]
        refused = by_key[("dw-reader", "DICOMweb POST", "")]
        assert refused[2:5] == ["110104", "C", 4]
        failed_login = by_key[("unknown", "DICOMweb GET", "1.2.3")]
        assert failed_login[2] == "110114"
        assert "Doe" not in repr(rows)
