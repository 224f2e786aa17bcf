"""Admin RPCs of tiers: study moves and per-tier figures.

The Admin servicer extended with the tier RPCs: it parses the request, calls
the archive and maps the outcome; storage decisions stay in
``archive.mover``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from dicomvault.archive.api.grpc_server import AdminServicer

if TYPE_CHECKING:
    # The package imports as ``dicomvault.*``, which mypy resolves to Any;
    # this gives the error-mapping decorator its real signature.
    F = TypeVar("F", bound=Callable[..., Any])

    def unary(method: F) -> F: ...
else:
    from dicomvault.archive.api.grpc_server import unary
from dicomvault.proto import lifecycle_pb2

if TYPE_CHECKING:
    from dicomvault.archive.lifecycle import Policy
    from dicomvault.archive.mover import MoveOutcome


class TierAdminServicer(AdminServicer):  # type: ignore[misc]
    """Admin service with study moves, tier figures and lifecycle rules."""

    def _move_reply(self, outcome: MoveOutcome) -> lifecycle_pb2.MoveStudyResponse:
        return lifecycle_pb2.MoveStudyResponse(
            study_uid=outcome.study_uid,
            to_tier=outcome.to_tier,
            from_tiers=list(outcome.from_tiers),
            versions=outcome.versions,
            objects=outcome.objects,
            bytes=outcome.bytes,
            op_id=outcome.op_id,
        )

    @unary
    def MoveStudy(  # noqa: N802 - gRPC method name
        self, request: lifecycle_pb2.MoveStudyRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.MoveStudyResponse:
        outcome = self.archive.move_study(request.study_uid, request.to_tier)
        return self._move_reply(outcome)

    @unary
    def TierStatus(  # noqa: N802
        self, request: lifecycle_pb2.TierStatusRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.TierStatusResponse:
        status = self.archive.tier_status()
        return lifecycle_pb2.TierStatusResponse(
            tiers=[
                lifecycle_pb2.TierUsage(
                    tier=u.tier, studies=u.studies, instances=u.instances, bytes=u.bytes
                )
                for u in status.tiers
            ],
            pending_moves=[
                lifecycle_pb2.MoveState(
                    op_id=m["op_id"],
                    study_uid=m["study_uid"],
                    to_tier=m["target"],
                    detail=m["phase"],
                )
                for m in status.pending_moves
            ],
            failed_moves=[
                lifecycle_pb2.MoveState(
                    study_uid=m["study_uid"], to_tier=m["to_tier"], detail=m["error"]
                )
                for m in status.failed_moves
            ],
        )

    @staticmethod
    def _policy_reply(policy: Policy) -> lifecycle_pb2.PolicyResponse:
        return lifecycle_pb2.PolicyResponse(
            version=policy.version,
            text=policy.source,
            rule_names=[rule.name for rule in policy.rules],
        )

    @unary
    def GetPolicy(  # noqa: N802
        self, request: lifecycle_pb2.GetPolicyRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.PolicyResponse:
        return self._policy_reply(self.archive.get_policy())

    @unary
    def SetPolicy(  # noqa: N802
        self, request: lifecycle_pb2.SetPolicyRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.PolicyResponse:
        return self._policy_reply(self.archive.set_policy(request.text))

    @unary
    def ApplyPolicy(  # noqa: N802
        self, request: lifecycle_pb2.ApplyPolicyRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.ApplyPolicyResponse:
        if request.dry_run:
            plan, done, failed = self.archive.plan_lifecycle(), [], []
        else:
            plan, done, failed = self.archive.apply_lifecycle(confirm=request.confirm)
        return lifecycle_pb2.ApplyPolicyResponse(
            policy_version=plan.policy_version,
            planned=[
                lifecycle_pb2.PlannedMove(
                    study_uid=m.study_uid,
                    from_tiers=list(m.from_tiers),
                    to_tier=m.to_tier,
                    bytes=m.bytes,
                    rule=m.rule,
                )
                for m in plan.moves
            ],
            planned_bytes=plan.bytes,
            archive_bytes=plan.archive_bytes,
            needs_confirmation=plan.needs_confirmation,
            moved=[self._move_reply(outcome) for outcome in done],
            failed=[
                lifecycle_pb2.MoveState(study_uid=uid, detail=error)
                for uid, error in failed
            ],
        )

    def _preview(self) -> lifecycle_pb2.RetentionPreviewResponse:
        return lifecycle_pb2.RetentionPreviewResponse(
            due=[
                lifecycle_pb2.DueStudy(
                    study_uid=d.study_uid, rule=d.rule, bytes=d.bytes, held=d.held
                )
                for d in self.archive.retention_preview()
            ]
        )

    def _holds(self) -> lifecycle_pb2.HoldListResponse:
        return lifecycle_pb2.HoldListResponse(
            holds=[lifecycle_pb2.Hold(**hold) for hold in self.archive.list_holds()]
        )

    @unary
    def SetRetention(  # noqa: N802
        self, request: lifecycle_pb2.SetPolicyRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.RetentionPreviewResponse:
        self.archive.set_retention(request.text)
        return self._preview()

    @unary
    def PreviewRetention(  # noqa: N802
        self,
        request: lifecycle_pb2.RetentionPreviewRequest,
        context: grpc.ServicerContext,
    ) -> lifecycle_pb2.RetentionPreviewResponse:
        return self._preview()

    @unary
    def AddHold(  # noqa: N802
        self, request: lifecycle_pb2.HoldRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.HoldListResponse:
        self.archive.add_hold(request.kind, request.value, request.reason)
        return self._holds()

    @unary
    def RemoveHold(  # noqa: N802
        self, request: lifecycle_pb2.HoldRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.HoldListResponse:
        self.archive.remove_hold(request.kind, request.value)
        return self._holds()

    @unary
    def ListHolds(  # noqa: N802
        self, request: lifecycle_pb2.ListHoldsRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.HoldListResponse:
        return self._holds()

    @unary
    def ApplyRetention(  # noqa: N802
        self, request: lifecycle_pb2.ApplyPolicyRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.RetentionPreviewResponse:
        if request.dry_run:
            return self._preview()
        done = self.archive.apply_retention(confirm=request.confirm)
        return lifecycle_pb2.RetentionPreviewResponse(
            due=[
                lifecycle_pb2.DueStudy(
                    study_uid=d.study_uid, rule=d.rule, bytes=d.bytes
                )
                for d in done
            ]
        )

    @unary
    def PurgeDue(  # noqa: N802
        self, request: lifecycle_pb2.PurgeRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.PurgeResponse:
        return lifecycle_pb2.PurgeResponse(instances=self.archive.purge_due())
