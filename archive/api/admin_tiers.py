"""Admin RPCs of tiers: study moves and per-tier figures.

The Admin servicer extended with the tier RPCs: it parses the request, calls
the archive and maps the outcome; storage decisions stay in
``archive.mover``.
"""

from __future__ import annotations

import grpc

from dicomvault.archive.api.grpc_server import AdminServicer, unary
from dicomvault.proto import lifecycle_pb2


class TierAdminServicer(AdminServicer):
    """Admin service with MoveStudy and TierStatus."""

    @unary
    def MoveStudy(  # noqa: N802 - gRPC method name
        self, request: lifecycle_pb2.MoveStudyRequest, context: grpc.ServicerContext
    ) -> lifecycle_pb2.MoveStudyResponse:
        outcome = self.archive.move_study(request.study_uid, request.to_tier)
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
