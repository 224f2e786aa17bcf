"""Bearer tokens, roles and the audit trail on every DICOMweb route.

The same two calls as the gRPC interceptor: :func:`auth.authenticate` with
the ``Authorization`` header, then :func:`auth.authorize` with the action of
the route (one table below). No token or a bad one: 401 with a
``WWW-Authenticate: Bearer`` header; a role that does not grant the action:
403. CORS preflight requests (OPTIONS) pass, since browsers send them
without credentials.

Every other request leaves one audit event (PS3.15 vocabulary, as for gRPC)
once its answer is sent: who, from where, which route, the UIDs in its path
and the outcome from the HTTP status. A query string is kept only as its
SHA-256, since QIDO parameters can name a patient.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Any

from dicomvault.archive import audit as au
from dicomvault.archive import auth
from dicomvault.archive.api.status import http_status
from dicomvault.archive.errors import DicomVaultError

logger = logging.getLogger(__name__)

# Routes ending in a QIDO-RS collection are searches; other GETs read data.
_QIDO = re.compile(r"/(studies|series|instances)/?$")


_UIDS = re.compile(r"/studies/([0-9.]+)(?:/series/([0-9.]+))?(?:/instances/([0-9.]+))?")
# action -> (audit event, PS3.15 EventActionCode)
_EVENTS = {
    auth.STORE: (au.INSTANCES_TRANSFERRED, "C"),
    auth.RETRIEVE: (au.INSTANCES_TRANSFERRED, "R"),
    auth.SEARCH: (au.QUERY, "E"),
    auth.DELETE: (au.INSTANCES_ACCESSED, "D"),
}


def _outcome(status: int) -> int:
    if status < 400:
        return au.SUCCESS
    return au.MINOR_FAILURE if status < 500 else au.SERIOUS_FAILURE


def audit_event(
    scope: Any, principal: auth.Principal | None, action: str, status: int
) -> au.AuditEvent:
    """The audit record of one answered DICOMweb request."""
    if principal is None:
        event, code = au.USER_AUTHENTICATION, "E"
    else:
        event, code = _EVENTS[action]
    found = _UIDS.search(scope["path"])
    study, series, sop = found.groups("") if found else ("", "", "")
    query = scope.get("query_string") or b""
    client = scope.get("client") or ("", 0)
    return au.AuditEvent(
        event_id_code=event[0],
        event_id_name=event[1],
        event_action_code=code,
        event_outcome_indicator=_outcome(status),
        event_outcome_description=f"HTTP {status}",
        request=f"DICOMweb {scope['method']}",
        user_id=principal.subject if principal else "unknown",
        user_role_ids=principal.roles if principal else (),
        network_access_point_id=str(client[0]),
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        participant_object_query_sha256=(
            hashlib.sha256(query).hexdigest() if query else ""
        ),
    )


def route_action(method: str, path: str) -> str:
    """The action a DICOMweb request needs (see ``auth.ROLE_ACTIONS``)."""
    if method == "POST":
        return auth.STORE
    if method == "DELETE":
        return auth.DELETE
    if _QIDO.search(path):
        return auth.SEARCH
    return auth.RETRIEVE


class BearerAuthMiddleware:
    """ASGI middleware that admits only authorized requests.

    Parameters
    ----------
    app
        The DICOMweb application.
    authenticator
        From :meth:`auth.Authenticator.from_settings`; None runs open (every
        caller has every role), which the settings allow on loopback only.
    """

    def __init__(
        self,
        app: Any,
        authenticator: auth.Authenticator | None,
        audit_log: au.AuditLog | None = None,
    ):
        self.app = app
        self.authenticator = authenticator
        self.audit_log = audit_log

    async def _audit(self, event: au.AuditEvent) -> None:
        if self.audit_log is None:
            return
        try:
            # The audit write waits for an fsync: keep it off the event loop.
            await asyncio.to_thread(self.audit_log.record, [event])
        except Exception:  # noqa: BLE001 - the answer has been sent already
            logger.exception("audit event of a DICOMweb request not recorded")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization")
        action = route_action(scope["method"], scope["path"])
        principal: auth.Principal | None = None
        try:
            principal = auth.authenticate(
                self.authenticator, header.decode("latin-1") if header else None
            )
            auth.authorize(principal, action)
        except DicomVaultError as err:
            status = http_status(err)
            logger.info(
                "dicomweb refused: status=%s error=%s", status, type(err).__name__
            )
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            body = (str(err) + "\n").encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        *extra,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            refused_by = principal if status == 403 else None
            await self._audit(audit_event(scope, refused_by, action, status))
            return
        scope.setdefault("state", {})["principal"] = principal
        answered = {"status": 500}

        async def send_and_note(message: Any) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            await self._audit(audit_event(scope, principal, action, answered["status"]))
