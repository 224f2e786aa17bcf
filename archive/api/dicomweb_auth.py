"""Bearer tokens and roles on every DICOMweb route, as on every RPC.

The same two calls as the gRPC interceptor: :func:`auth.authenticate` with
the ``Authorization`` header, then :func:`auth.authorize` with the action of
the route (one table below). No token or a bad one: 401 with a
``WWW-Authenticate: Bearer`` header; a role that does not grant the action:
403. CORS preflight requests (OPTIONS) pass, since browsers send them
without credentials.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from dicomvault.archive import auth
from dicomvault.archive.api.status import http_status
from dicomvault.archive.errors import DicomVaultError

logger = logging.getLogger(__name__)

# Routes ending in a QIDO-RS collection are searches; other GETs read data.
_QIDO = re.compile(r"/(studies|series|instances)/?$")


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

    def __init__(self, app: Any, authenticator: auth.Authenticator | None):
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization")
        try:
            principal = auth.authenticate(
                self.authenticator, header.decode("latin-1") if header else None
            )
            auth.authorize(principal, route_action(scope["method"], scope["path"]))
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
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
