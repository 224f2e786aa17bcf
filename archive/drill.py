"""Disaster-recovery drills: restore a whole archive from one replica region.

A drill treats the primary as gone. From the region's tiers alone it

1. copies every object into the target (a folder, or an object-store URL for
   the tiers plus a local folder for the index), manifests of each version
   after its objects, each copy verified;
2. rebuilds the catalog and the metadata index from the copied manifests
   (:func:`maintenance.rebuild_index`);
3. reads back every instance version through the normal retrieval path and
   compares its SHA-256 with the recorded one;
4. when the primary's tiers answer, lists which versions the primary holds
   and the restored archive does not (the recovery point);

and reports counts, bytes, mismatches and the time it took (the recovery
time). The target then holds a ``dicomvault.toml`` that serves it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dicomvault.archive import logkeys as lk
from dicomvault.archive import maintenance
from dicomvault.archive.config import Settings
from dicomvault.archive.errors import InvalidInputError, RefusedError
from dicomvault.archive.index import Index
from dicomvault.archive.manifest import MANIFEST_NAME, STUDIES_ROOT
from dicomvault.archive.replication import copy_version
from dicomvault.archive.retrieve import Reader
from dicomvault.tiers import Tier, TierError, open_tier

logger = logging.getLogger(__name__)

CONFIG_NAME = "dicomvault.toml"
_LISTED_MISSING = 20


@dataclass(slots=True)
class DrillReport:
    """What a drill restored, checked and found."""

    region: str
    target: str
    studies: int = 0
    instances: int = 0
    objects: int = 0
    bytes: int = 0
    mismatches: int = 0
    mismatch_details: list[str] = field(default_factory=list)
    missing_vs_primary: int | None = None
    missing_examples: list[str] = field(default_factory=list)
    copy_seconds: float = 0.0
    rebuild_seconds: float = 0.0
    verify_seconds: float = 0.0
    restore_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _target_tiers(settings: Settings, target: str, data_dir: Path) -> dict[str, str]:
    if "://" in target and not target.startswith("file://"):
        return {name: f"{target.rstrip('/')}/{name}" for name in settings.tiers}
    return {name: str(data_dir / "tiers" / name) for name in settings.tiers}


def _version_prefixes(tier: Tier) -> set[str]:
    return {
        key.rsplit("/", 1)[0]
        for key in tier.list(STUDIES_ROOT)
        if key.endswith("/" + MANIFEST_NAME)
    }


def run_drill(
    settings: Settings,
    region: str,
    target: str,
    data_dir: Path | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DrillReport:
    """Restore the archive from ``region`` alone into ``target``; see module.

    Writes a new archive at the target; never changes the region or the
    primary.

    Parameters
    ----------
    settings
        The primary's settings (for its tiers and its replica regions).
    region
        The replica region to restore from.
    target
        An empty folder, or an ``s3://`` URL for the restored tiers.
    data_dir
        Folder for the restored index; required for a URL target, the
        target itself for a folder target.
    storage_options
        Options of a URL target's file system.

    Raises
    ------
    InvalidInputError
        Unknown region, or a URL target without ``data_dir``.
    RefusedError
        The target already holds an archive.
    """
    if region not in settings.replicas:
        known = ", ".join(settings.replicas) or "none configured"
        raise InvalidInputError(
            f"no replica region {region!r} in the settings (known: {known}); "
            "add a [replicas.NAME] table"
        )
    is_url = "://" in target and not target.startswith("file://")
    if is_url and data_dir is None:
        raise InvalidInputError(
            f"target {target} is a URL; give --data FOLDER for the restored index"
        )
    folder = data_dir or Path(target.removeprefix("file://"))
    if (folder / "index").exists():
        raise RefusedError(
            f"target {folder} already holds an archive index; a drill restores "
            "into an empty folder only, choose another --target"
        )
    started = time.monotonic()
    report = DrillReport(region, target)
    source = {
        name: open_tier(name, conf.url, dict(conf.storage_options))
        for name, conf in settings.replicas[region].tiers.items()
        if name in settings.tiers
    }
    urls = _target_tiers(settings, target, folder)
    restored = {
        name: open_tier(name, url, storage_options if is_url else None)
        for name, url in urls.items()
    }

    # Version by version, each object verified against the region's manifest
    # and the manifest written last: a version is complete at the target
    # before anything claims it is. Objects no manifest lists (leftovers of
    # interrupted writes) are not restored.
    for name, src in source.items():
        for prefix in sorted(_version_prefixes(src)):
            done = copy_version(src, restored[name], prefix)
            report.objects += done.objects
            # The target starts empty, so every byte of the version is copied.
            report.bytes += done.bytes
    report.copy_seconds = time.monotonic() - started

    index = Index.open(folder / "index")
    try:
        instances, studies, report.rebuild_seconds = maintenance.rebuild_index(
            index, restored
        )
        report.instances, report.studies = instances, studies
        report.verify_seconds = _verify_all(index, restored, report)
    finally:
        index.close()
    report.restore_seconds = time.monotonic() - started

    _compare_with_primary(settings, restored, report)
    _write_config(
        folder,
        urls,
        storage_options if is_url else None,
        settings.get("storage.default_tier"),
    )
    lk.log_event(
        logger,
        lk.DR_DRILL_FINISHED,
        **{
            lk.REGION: region,
            "target": target,
            "studies": report.studies,
            "instances": report.instances,
            lk.BYTES: report.bytes,
            "mismatches": report.mismatches,
            "missing_vs_primary": report.missing_vs_primary,
            lk.SECONDS: f"{report.restore_seconds:.3f}",
        },
    )
    return report


def _verify_all(index: Index, tiers: dict[str, Tier], report: DrillReport) -> float:
    started = time.monotonic()
    reader = Reader(tiers)
    for record in index.catalog.iter_records():
        for version in record.versions.values():
            digest = hashlib.sha256()
            try:
                for piece in reader.stream(record, version.version):
                    digest.update(piece)
                found = digest.hexdigest()
            except Exception as err:  # noqa: BLE001 - counted as a mismatch
                found = f"unreadable ({type(err).__name__}: {err})"
            if found != version.sha256:
                report.mismatches += 1
                report.mismatch_details.append(
                    f"{version.prefix}: expected sha256 {version.sha256}, found {found}"
                )
    return time.monotonic() - started


def _compare_with_primary(
    settings: Settings, restored: dict[str, Tier], report: DrillReport
) -> None:
    try:
        primary: set[str] = set()
        for name, conf in settings.tiers.items():
            tier = open_tier(name, conf.url, dict(conf.storage_options))
            primary |= _version_prefixes(tier)
    except (TierError, OSError) as err:
        logger.warning("primary not reachable for the RPO comparison: %s", err)
        return
    here: set[str] = set()
    for tier in restored.values():
        here |= _version_prefixes(tier)
    missing = sorted(primary - here)
    report.missing_vs_primary = len(missing)
    report.missing_examples = missing[:_LISTED_MISSING]


def _write_config(
    folder: Path,
    urls: dict[str, str],
    storage_options: dict[str, Any] | None,
    default_tier: str,
) -> None:
    lines = [
        f"[server]\ndata_dir = {str(folder)!r}\n",
        f"[storage]\ndefault_tier = {default_tier!r}\n",
    ]
    for name, url in urls.items():
        lines.append(f"[tiers.{name}]\nurl = {url!r}\n")
        if storage_options:
            # Limitation: only flat string options are written out; nested
            # options must be added to the restored config by hand.
            flat = {k: v for k, v in storage_options.items() if isinstance(v, str)}
            inner = ", ".join(f"{k} = {v!r}" for k, v in flat.items())
            lines.append(f"storage_options = {{ {inner} }}\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text("\n".join(lines))
