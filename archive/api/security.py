"""The gRPC security gate: TLS credentials, bearer tokens, roles and audit.

One server interceptor checks every RPC against :data:`RPC_RULES` (full
method name -> the action it needs and the audit event it makes), before the
servicer runs:

- no token, or a bad one: UNAUTHENTICATED, audited as a failed
  "User Authentication" (DCM 110114);
- a valid token whose roles do not grant the action: PERMISSION_DENIED,
  audited as a refused attempt of that RPC's event;
- otherwise the call runs and one audit event per touched instance (or one
  per call when none is touched) records its outcome.

The health service answers without a token, so load balancers and the test
harness can probe the port; it reveals nothing stored. An RPC registered on
the server but missing from the table is refused for every role, so a new
service is closed until someone adds its line here.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from dicomvault.archive import audit as au
from dicomvault.archive import auth
from dicomvault.archive import logkeys as lk
from dicomvault.archive.api.status import grpc_status
from dicomvault.archive.auth import (
    ANONYMOUS,
    Authenticator,
    Principal,
    authenticate,
    authorize,
)
from dicomvault.archive.config import Settings, check_security, is_loopback
from dicomvault.archive.errors import PermissionDeniedError, UnauthenticatedError
from dicomvault.archive.service import Archive
from dicomvault.proto import admin_pb2, archive_pb2, query_pb2

logger = logging.getLogger(__name__)

_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "dicomvault_principal", default=ANONYMOUS
)

# Fields of an audit event that name what a call touched.
Objects = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RpcRule:
    """What one RPC needs (an action) and what it leaves in the audit trail."""

    action: str
    event: tuple[str, str]
    action_code: str


def _name(module: Any, service: str, method: str) -> str:
    return f"/{module.DESCRIPTOR.services_by_name[service].full_name}/{method}"


_ARCHIVE, _QUERY, _ADMIN = (
    (archive_pb2, "Archive"),
    (query_pb2, "Query"),
    (admin_pb2, "Admin"),
)
# The one table: RPC -> required action (see auth.ROLE_ACTIONS for roles).
RPC_RULES: dict[str, RpcRule] = {
    _name(*_ARCHIVE, "Store"): RpcRule(auth.STORE, au.INSTANCES_TRANSFERRED, "C"),
    _name(*_ARCHIVE, "Retrieve"): RpcRule(auth.RETRIEVE, au.INSTANCES_TRANSFERRED, "R"),
    _name(*_ARCHIVE, "GetFrames"): RpcRule(auth.RETRIEVE, au.INSTANCES_ACCESSED, "R"),
    _name(*_ARCHIVE, "Search"): RpcRule(auth.SEARCH, au.QUERY, "E"),
    _name(*_QUERY, "Sql"): RpcRule(auth.SQL_QUERY, au.QUERY, "E"),
    _name(*_ADMIN, "RebuildIndex"): RpcRule(
        auth.INDEX_REBUILD, au.APPLICATION_ACTIVITY, "E"
    ),
    _name(*_ADMIN, "Verify"): RpcRule(
        auth.ARCHIVE_VERIFY, au.APPLICATION_ACTIVITY, "E"
    ),
    _name(*_ADMIN, "DeidentifyStudy"): RpcRule(
        auth.ADMINISTER, au.INSTANCES_ACCESSED, "C"
    ),
    _name(*_ARCHIVE, "WatchChanges"): RpcRule(auth.SEARCH, au.QUERY, "E"),
    _name(*_QUERY, "ListExtendedAttributes"): RpcRule(auth.SEARCH, au.QUERY, "E"),
    _name(*_QUERY, "AddExtendedAttribute"): RpcRule(
        auth.ADMINISTER, au.APPLICATION_ACTIVITY, "U"
    ),
    _name(*_QUERY, "ExportParquet"): RpcRule(auth.ADMINISTER, au.QUERY, "E"),
    **{
        _name(*_ADMIN, rpc): RpcRule(auth.ADMINISTER, au.APPLICATION_ACTIVITY, "E")
        for rpc in (
            "MoveStudy",
            "TierStatus",
            "GetPolicy",
            "SetPolicy",
            "ApplyPolicy",
            "SetRetention",
            "PreviewRetention",
            "AddHold",
            "RemoveHold",
            "ListHolds",
        )
    },
    **{
        _name(*_ADMIN, rpc): RpcRule(auth.DELETE, au.INSTANCES_ACCESSED, "D")
        for rpc in ("ApplyRetention", "PurgeDue")
    },
    _name(*_ADMIN, "ReplicationStatus"): RpcRule(
        auth.ADMINISTER, au.APPLICATION_ACTIVITY, "E"
    ),
}
# Reflection describes the API, not the data: any authenticated role.
DESCRIBE_RPCS = frozenset(
    {f"/{reflection.SERVICE_NAME}/ServerReflectionInfo"}
    | {
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)


def current_principal() -> Principal:
    """The principal of the RPC running in this thread."""
    return _PRINCIPAL.get()


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from ``security.tls_*``; None when TLS is off.

    With ``security.tls_client_ca_file`` the handshake requires a client
    certificate signed by one of those CAs (mutual TLS).
    """
    cert_file = settings.get("security.tls_cert_file")
    if not cert_file:
        return None
    ca_file = settings.get("security.tls_client_ca_file")
    return grpc.ssl_server_credentials(
        [
            (
                Path(settings.get("security.tls_key_file")).read_bytes(),
                Path(cert_file).read_bytes(),
            )
        ],
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        require_client_auth=bool(ca_file),
    )


def _peer_address(context: grpc.ServicerContext) -> str:
    peer = context.peer() or ""
    for scheme in ("ipv4:", "ipv6:"):
        if peer.startswith(scheme):
            host = peer[len(scheme) :].rsplit(":", 1)[0]
            return host.strip("[]").split("%")[0]
    return peer


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SecurityInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Authenticates, authorizes and audits every RPC.

    Parameters
    ----------
    archive
        The archive whose audit log records events and whose catalog names
        the study and series of a retrieved instance.
    authenticator
        Validates bearer tokens; None runs open (every caller is
        :data:`~dicomvault.archive.auth.ANONYMOUS`), for loopback only.
    """

    def __init__(self, archive: Archive, authenticator: Authenticator | None):
        self.archive = archive
        self.authenticator = authenticator

    @classmethod
    def for_server(cls, archive: Archive, host: str) -> SecurityInterceptor:
        """The interceptor of ``archive.settings``; refuses an open non-loopback host.

        Raises
        ------
        ConfigError
            ``host`` is not loopback and ``security.auth`` is ``none``.
        """
        settings = archive.settings
        check_security({**settings.values, "server.grpc_host": host})
        authenticator = Authenticator.from_settings(settings)
        if authenticator is None and is_loopback(host):
            lk.log_event(
                logger,
                lk.AUTH_OPEN,
                logging.WARNING,
                **{
                    lk.ADDRESS: host,
                    lk.REASON: "security.auth is none: every local caller has "
                    "every role; set security.auth = jwt before exposing the port",
                },
            )
        return cls(archive, authenticator)

    # -- the gate ----------------------------------------------------------

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        rule = RPC_RULES.get(method)
        if rule is None and method in DESCRIBE_RPCS:
            rule = RpcRule(auth.DESCRIBE, au.APPLICATION_ACTIVITY, "E")
        return self._wrap(handler, method, rule)

    def _admit(
        self, method: str, rule: RpcRule | None, context: grpc.ServicerContext
    ) -> Principal:
        metadata = dict(context.invocation_metadata() or ())
        try:
            principal = authenticate(self.authenticator, metadata.get("authorization"))
        except UnauthenticatedError as err:
            self._record(
                au.USER_AUTHENTICATION,
                "E",
                au.MINOR_FAILURE,
                method,
                Principal("unknown", ()),
                context,
                [{}],
                "UNAUTHENTICATED",
            )
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))
        try:
            if rule is None:
                raise PermissionDeniedError(
                    f"{method} has no entry in the RPC access table, so no role "
                    "may call it; add it to RPC_RULES in archive/api/security.py"
                )
            authorize(principal, rule.action)
        except PermissionDeniedError as err:
            if rule is not None:
                self._record(
                    rule.event,
                    rule.action_code,
                    au.MINOR_FAILURE,
                    method,
                    principal,
                    context,
                    [{}],
                    "PERMISSION_DENIED",
                )
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        return principal

    def _wrap(
        self, handler: grpc.RpcMethodHandler, method: str, rule: RpcRule | None
    ) -> grpc.RpcMethodHandler:
        def finish(
            principal: Principal,
            context: grpc.ServicerContext,
            objects: Objects,
            error: BaseException | None,
        ) -> None:
            if rule is None or rule.action == auth.DESCRIBE:
                return
            outcome, description = au.SUCCESS, "OK"
            if error is not None:
                code = context.code() or grpc_status(error)
                description = code.name
                serious = code in (
                    grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.DATA_LOSS,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.UNKNOWN,
                )
                outcome = au.SERIOUS_FAILURE if serious else au.MINOR_FAILURE
            event, action_code = rule.event, rule.action_code
            if method == _name(*_QUERY, "Sql") and any(
                o.get("reads_audit") for o in objects
            ):
                event, action_code = au.AUDIT_LOG_USED, "R"
            self._record(
                event,
                action_code,
                outcome,
                method,
                principal,
                context,
                objects,
                description,
            )

        def run_unary(request: Any, context: grpc.ServicerContext) -> Any:
            principal = self._admit(method, rule, context)
            token = _PRINCIPAL.set(principal)
            objects = _request_objects(self.archive, method, request)
            try:
                response = inner(request, context)
            except BaseException as err:
                finish(principal, context, objects, err)
                raise
            finally:
                _PRINCIPAL.reset(token)
            finish(principal, context, _response_objects(response) or objects, None)
            return response

        def run_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            principal = self._admit(method, rule, context)
            token = _PRINCIPAL.set(principal)
            objects = _request_objects(self.archive, method, request)
            try:
                yield from inner(request, context)
            except BaseException as err:
                finish(principal, context, objects, err)
                raise
            finally:
                _PRINCIPAL.reset(token)
            finish(principal, context, objects, None)

        # (request streaming, response streaming) -> the handler's behaviour,
        # the factory that rebuilds it, and the wrapper of that shape.
        shapes: dict[tuple[bool, bool], tuple[str, Any, Any]] = {
            (False, False): (
                "unary_unary",
                grpc.unary_unary_rpc_method_handler,
                run_unary,
            ),
            (True, False): (
                "stream_unary",
                grpc.stream_unary_rpc_method_handler,
                run_unary,
            ),
            (False, True): (
                "unary_stream",
                grpc.unary_stream_rpc_method_handler,
                run_stream,
            ),
            (True, True): (
                "stream_stream",
                grpc.stream_stream_rpc_method_handler,
                run_stream,
            ),
        }
        name, factory, run = shapes[
            (bool(handler.request_streaming), bool(handler.response_streaming))
        ]
        inner = getattr(handler, name)
        return factory(
            run,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    # -- the record ----------------------------------------------------------

    def _record(
        self,
        event: tuple[str, str],
        action_code: str,
        outcome: int,
        method: str,
        principal: Principal,
        context: grpc.ServicerContext,
        objects: Objects,
        description: str,
    ) -> None:
        peer = _peer_address(context)
        events = [
            au.AuditEvent(
                event_id_code=event[0],
                event_id_name=event[1],
                event_action_code=action_code,
                event_outcome_indicator=(
                    au.MINOR_FAILURE
                    if obj.get("rejected") and outcome == au.SUCCESS
                    else outcome
                ),
                event_outcome_description=(
                    "REJECTED" if obj.get("rejected") else description
                ),
                request=method.rsplit("/", 1)[-1],
                user_id=principal.subject,
                user_role_ids=principal.roles,
                network_access_point_id=peer,
                study_uid=obj.get("study_uid", ""),
                series_uid=obj.get("series_uid", ""),
                sop_instance_uid=obj.get("sop_instance_uid", ""),
                participant_object_query_sha256=obj.get("query_sha256", ""),
            )
            for obj in objects or [{}]
        ]
        try:
            self.archive.audit_log().record(events)
        except Exception:  # noqa: BLE001 - the answer is already decided
            # Limitation: a failed audit write does not undo the request it
            # describes (a stream may already be sent); it is an ERROR line.
            logger.exception(
                "audit write failed: request=%s user=%s", method, principal.subject
            )


def _request_objects(archive: Archive, method: str, request: Any) -> Objects:
    """What a request names: UIDs, or the digest of a query."""
    if isinstance(request, archive_pb2.RetrieveRequest | archive_pb2.GetFramesRequest):
        uid = request.sop_instance_uid
        try:
            record = archive.index.catalog.get(uid) if uid else None
        except Exception:  # noqa: BLE001 - a bad UID is reported by the handler
            record = None
        if record is None:
            return [{"sop_instance_uid": uid}]
        return [
            {
                "study_uid": record.study_uid,
                "series_uid": record.series_uid,
                "sop_instance_uid": uid,
            }
        ]
    if isinstance(request, archive_pb2.SearchRequest):
        match = dict(request.match)
        return [
            {
                "study_uid": match.get("StudyInstanceUID", ""),
                "series_uid": match.get("SeriesInstanceUID", ""),
                "sop_instance_uid": match.get("SOPInstanceUID", ""),
                "query_sha256": _digest(request.SerializeToString(deterministic=True)),
            }
        ]
    if isinstance(request, query_pb2.SqlRequest):
        return [
            {
                "query_sha256": _digest(request.sql.encode()),
                "reads_audit": au.reads_audit_table(request.sql),
            }
        ]
    return [{}]


def _response_objects(response: Any) -> Objects:
    """The instances a Store answered for, one entry each."""
    if not isinstance(response, archive_pb2.StoreResponse):
        return []
    return [
        {
            "study_uid": r.study_uid,
            "series_uid": r.series_uid,
            "sop_instance_uid": r.sop_instance_uid,
            "rejected": r.outcome == archive_pb2.REJECTED,
        }
        for r in response.results
    ]


__all__ = [
    "RPC_RULES",
    "RpcRule",
    "SecurityInterceptor",
    "current_principal",
    "server_credentials",
]
