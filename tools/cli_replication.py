"""Commands ``replication status``, ``watch`` and ``dr drill``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "127.0.0.1:50051"


def cmd_replication(args: argparse.Namespace) -> int:
    from dicomvault.proto import admin_pb2_grpc, replication_pb2
    from dicomvault.tools.client import connect

    with connect(args.server) as channel:
        reply = admin_pb2_grpc.AdminStub(channel).ReplicationStatus(
            replication_pb2.ReplicationStatusRequest(), timeout=args.timeout
        )
    rows = [
        {
            "region": r.region,
            "cursor": r.cursor,
            "last_sequence": r.last_sequence,
            "pending_changes": r.pending_changes,
            "pending_bytes": r.pending_bytes,
            "oldest_pending_age_seconds": round(r.oldest_pending_age_seconds, 3),
            "last_error": r.last_error,
        }
        for r in reply.regions
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no replica regions are configured")
        return 0
    for row in rows:
        print(
            f"{row['region']}: {row['pending_changes']} pending changes, "
            f"{row['pending_bytes']} pending bytes, oldest pending "
            f"{row['oldest_pending_age_seconds']} s, at {row['cursor']} of "
            f"{row['last_sequence']}"
            + (f", last error: {row['last_error']}" if row["last_error"] else "")
        )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from dicomvault.proto import archive_pb2_grpc, replication_pb2
    from dicomvault.tools.client import connect

    with connect(args.server) as channel:
        stream = archive_pb2_grpc.ArchiveStub(channel).WatchChanges(
            replication_pb2.WatchChangesRequest(from_sequence=args.from_sequence)
        )
        seen = 0
        for change in stream:
            print(change.change_json, flush=True)
            seen += 1
            if args.limit and seen >= args.limit:
                stream.cancel()
                break
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    from dicomvault.archive.config import ConfigError, load_settings
    from dicomvault.archive.drill import run_drill
    from dicomvault.archive.errors import DicomVaultError

    try:
        settings = load_settings(Path(args.config) if args.config else None)
        report = run_drill(
            settings,
            args.region,
            args.target,
            Path(args.data) if args.data else None,
        )
    except (ConfigError, DicomVaultError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    body: dict[str, Any] = report.to_dict()
    if args.json:
        print(json.dumps(body))
    else:
        missing = body["missing_vs_primary"]
        print(
            f"restored from region {report.region} into {report.target}\n"
            f"  studies {report.studies}, instances {report.instances}, "
            f"objects {report.objects}, bytes {report.bytes}\n"
            f"  mismatches {report.mismatches}\n"
            "  missing compared with the primary (recovery point): "
            f"{'primary not reachable' if missing is None else missing}\n"
            f"  restore took {report.restore_seconds:.2f} s (recovery time)"
        )
        for line in report.mismatch_details:
            print(f"  mismatch: {line}")
    return 1 if report.mismatches else 0


def register(sub: Any) -> None:
    """Add the replication, watch and dr commands to ``dicomvault``."""
    p = sub.add_parser("replication", help="replica regions")
    p.add_argument("action", choices=("status",))
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_replication)

    p = sub.add_parser("watch", help="print the change log, then live changes")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.add_argument(
        "--from", dest="from_sequence", type=int, default=1, help="first sequence"
    )
    p.add_argument("--limit", type=int, default=0, help="stop after N changes")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("dr", help="disaster-recovery drills")
    p.add_argument("action", choices=("drill",))
    p.add_argument("--config", help="the primary's TOML settings file")
    p.add_argument("--region", required=True, help="replica region to restore from")
    p.add_argument("--target", required=True, help="empty folder or s3:// URL")
    p.add_argument("--data", help="index folder (required for a URL target)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_drill)
