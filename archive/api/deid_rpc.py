"""The Admin.DeidentifyStudy RPC: request to options, archive call, reply."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import grpc

from dicomvault.archive.api.status import grpc_status
from dicomvault.archive.deid import (
    RETAIN_DATES,
    RETAIN_DEVICE,
    RETAIN_INSTITUTION,
    RETAIN_PATIENT_CHARACTERISTICS,
    RETAIN_UIDS,
    DeidOptions,
    keep_private_tags,
)
from dicomvault.archive.errors import DicomVaultError, InvalidInputError
from dicomvault.proto import deid_pb2
from dicomvault.tiers import Tier, TierError, open_tier

if TYPE_CHECKING:
    from dicomvault.archive.service import Archive

PROFILES = ("basic",)


def options_from_request(request: deid_pb2.DeidentifyStudyRequest) -> DeidOptions:
    """The de-identification options a request asks for.

    Pseudonymous UIDs use a fresh random key per request, so two copies made
    separately cannot be linked by their UIDs.

    Raises
    ------
    InvalidInputError
        Unknown profile or a malformed private tag.
    """
    profile = request.profile or "basic"
    if profile not in PROFILES:
        raise InvalidInputError(
            f"de-identification profile {profile!r} is not supported; "
            f"use one of {', '.join(PROFILES)}"
        )
    flags = {
        RETAIN_DATES: request.keep_dates,
        RETAIN_UIDS: request.keep_uids,
        RETAIN_DEVICE: request.keep_device,
        RETAIN_INSTITUTION: request.keep_institution,
        RETAIN_PATIENT_CHARACTERISTICS: request.keep_patient_characteristics,
    }
    try:
        private = keep_private_tags(request.keep_private_tags)
    except ValueError:
        raise InvalidInputError(
            f"private tags {list(request.keep_private_tags)} must be written "
            "as gggg,eeee in hexadecimal, e.g. 0009,1010"
        ) from None
    return DeidOptions(
        uid_key=os.urandom(32),
        options=frozenset(name for name, on in flags.items() if on),
        keep_private=private,
    )


def target_tier(archive: Archive, to: str) -> Tier:
    """A configured tier by name, or a new tier at a URL or absolute path."""
    if to in archive.tiers:
        return archive.tiers[to]
    if "://" in to or to.startswith("/"):
        return open_tier("deid", to)
    raise InvalidInputError(
        f"--to {to!r} is neither a configured tier ({', '.join(archive.tiers)}) "
        "nor a URL; give a tier name, file:///path or s3://bucket/prefix"
    )


class DeidAdminMixin:
    """Adds DeidentifyStudy to the Admin servicer."""

    archive: Archive

    def DeidentifyStudy(  # noqa: N802 - gRPC method name
        self,
        request: deid_pb2.DeidentifyStudyRequest,
        context: grpc.ServicerContext,
    ) -> deid_pb2.DeidentifyStudyResponse:
        try:
            options = options_from_request(request)
            target = target_tier(self.archive, request.to)
            report = self.archive.deidentify_study(request.study_uid, target, options)
        except (DicomVaultError, TierError) as err:
            context.abort(grpc_status(err), str(err))
        return deid_pb2.DeidentifyStudyResponse(
            new_study_uid=report.new_study_uid,
            keys=report.written,
            burned_in=[
                deid_pb2.BurnedInInstance(sop_instance_uid=uid, reason=reason)
                for uid, reason in sorted(report.burned_in.items())
            ],
        )
