"""Helpers for replication tests: configs with replica regions, waits, listings."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from dicomvault.archive.manifest import MANIFEST_NAME
from dicomvault.proto import admin_pb2_grpc, replication_pb2
from tests.server import ServerProcess

FAST = {
    "DICOMVAULT_REPLICATION__POLL_SECONDS": "0.05",
    "DICOMVAULT_REPLICATION__RETRY_MAX_SECONDS": "1",
}


def write_config(
    path: Path, primary: str, regions: dict[str, tuple[str, dict[str, Any]]]
) -> Path:
    """A TOML file with tier ``hot`` at ``primary`` and one per region."""
    lines = [f"[tiers.hot]\nurl = {primary!r}\n"]
    for name, (url, options) in regions.items():
        lines.append(f"[replicas.{name}.tiers.hot]\nurl = {url!r}")
        if options:
            lines.append(f"storage_options = {_toml(options)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def status(server: ServerProcess) -> dict[str, replication_pb2.RegionStatus]:
    """Replication status by region, through the Admin RPC."""
    client = server.client()
    try:
        reply = admin_pb2_grpc.AdminStub(client.channel).ReplicationStatus(
            replication_pb2.ReplicationStatusRequest(), timeout=30
        )
    finally:
        client.close()
    return {r.region: r for r in reply.regions}


def wait_caught_up(server: ServerProcess, timeout: float = 120.0) -> float:
    """Wait until every region has 0 pending changes; return the seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        regions = status(server)
        if regions and all(r.pending_changes == 0 for r in regions.values()):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"replication did not catch up in {timeout} s: {regions}")


def local_objects(root: Path) -> dict[str, str]:
    """Key -> SHA-256 of every object under a local tier's ``studies``."""
    base = root / "studies"
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


def manifests(objects: dict[str, str]) -> set[str]:
    """Version prefixes that have a manifest."""
    return {k.rsplit("/", 1)[0] for k in objects if k.endswith("/" + MANIFEST_NAME)}


def corpus_files(corpus: Path, count: int, max_bytes: int = 600_000) -> list[Path]:
    """``count`` corpus files below ``max_bytes``, in name order."""
    small = [p for p in sorted(corpus.glob("*.dcm")) if p.stat().st_size <= max_bytes]
    return small[:count]
