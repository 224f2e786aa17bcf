"""Self-repair: corrupt or missing primary objects replaced from a replica.

Changes stored data: a damaged object on a primary tier is deleted and
written again with the bytes of a replica region's copy. The copy is used
only after it is verified: the replica's manifest must pass its own checksum,
and the object must hash to the SHA-256 that manifest records for it (the
manifest itself must hash to what the catalog recorded, through its
``sha256`` of the instance). Each repair is one INFO line.

The damaged object is deleted before the good one is written, because a tier
refuses to overwrite. A crash between the two leaves the object missing on
the primary, which the next verify finds and repairs again from the same
replica: never worse than before.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

from dicomvault.archive import logkeys as lk
from dicomvault.archive.errors import IntegrityError
from dicomvault.archive.maintenance import Problem, VerifyReport
from dicomvault.archive.manifest import MANIFEST_NAME, Manifest
from dicomvault.tiers import ObjectKey, Tier, TierError, check_key, make_key

logger = logging.getLogger(__name__)

_REPAIRABLE = ("corrupt", "missing")
_PREFIX_DEPTH = 5  # studies/<study>/<series>/<sop>/<version>


def _verified_copy(replica: Tier, key: ObjectKey) -> bytes:
    """The replica's bytes for ``key``, checked against the replica manifest."""
    parts = key.split("/")
    prefix = "/".join(parts[:_PREFIX_DEPTH])
    manifest_key = make_key(prefix, MANIFEST_NAME)
    manifest_bytes = replica.read_bytes(manifest_key)
    manifest = Manifest.from_bytes(manifest_bytes, f"{manifest_key} in {replica.name}")
    if key == manifest_key:
        return manifest_bytes  # type: ignore[no-any-return]
    relative = "/".join(parts[_PREFIX_DEPTH:])
    expected = next(
        (o["sha256"] for o in manifest.objects if o["key"] == relative), None
    )
    if expected is None:
        raise IntegrityError(
            f"object {key} is not listed in the manifest of region tier "
            f"{replica.name}; it cannot be repaired from there"
        )
    data = replica.read_bytes(key)
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise IntegrityError(
            f"replica copy of {key} in {replica.name} has sha256 {found}, "
            f"expected {expected}"
        )
    return data  # type: ignore[no-any-return]


def repair_from_replicas(
    report: VerifyReport, tiers: dict[str, Tier], regions: dict[str, dict[str, Tier]]
) -> int:
    """Replace every corrupt or missing object in ``report`` from a replica.

    Changes stored data on the primary tiers. Problems that were repaired
    are marked ``repaired`` in ``report``; the others keep their finding and
    gain the reason no replica could help. Without regions nothing changes.

    Returns
    -------
    int
        How many objects were repaired.
    """
    if not regions:
        return 0
    repaired = 0
    for i, problem in enumerate(report.problems):
        if problem.kind not in _REPAIRABLE or problem.tier not in tiers:
            continue
        key = check_key(problem.key)
        reasons = []
        for region, replica_tiers in regions.items():
            replica = replica_tiers.get(problem.tier)
            if replica is None:
                continue
            try:
                data = _verified_copy(replica, key)
            except (IntegrityError, TierError) as err:
                reasons.append(f"{region}: {err}")
                continue
            report.problems[i] = _apply(tiers[problem.tier], key, data, region, problem)
            repaired += 1
            break
        else:
            detail = "; ".join(reasons) or f"no region has a tier {problem.tier}"
            report.problems[i] = replace(
                problem, detail=f"{problem.detail}; not repaired: {detail}"
            )
    return repaired


def _apply(
    tier: Tier, key: ObjectKey, data: bytes, region: str, problem: Problem
) -> Problem:
    sha256 = hashlib.sha256(data).hexdigest()
    tier.delete(key)
    tier.put_bytes(key, data, sha256=sha256)
    lk.log_event(
        logger,
        lk.OBJECT_REPAIRED,
        **{
            lk.TIER: tier.name,
            lk.KEY: key,
            lk.REGION: region,
            lk.BYTES: len(data),
            lk.SHA256: sha256,
            lk.REASON: problem.kind,
        },
    )
    return replace(problem, repaired=True, detail=f"{problem.detail}; repaired")


__all__ = ["repair_from_replicas"]
