"""``dicomvault tier``: lifecycle rules, study moves and what each tier holds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "127.0.0.1:50051"


def _client(args: argparse.Namespace) -> Any:
    from dicomvault.tools.client import Client

    return Client(args.server)


def cmd_move(args: argparse.Namespace) -> int:
    reply = _client(args).move_study(args.study, args.to)
    if not reply.versions:
        print(f"study {reply.study_uid} is already in tier {reply.to_tier}")
        return 0
    print(
        f"moved study {reply.study_uid} from {','.join(reply.from_tiers)} to "
        f"{reply.to_tier}: {reply.versions} instance versions, {reply.objects} "
        f"objects, {reply.bytes} bytes (op {reply.op_id})"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    reply = _client(args).tier_status()
    print(f"{'tier':<12} {'studies':>8} {'instances':>10} {'bytes':>14}")
    for usage in reply.tiers:
        print(
            f"{usage.tier:<12} {usage.studies:>8} {usage.instances:>10} "
            f"{usage.bytes:>14}"
        )
    print(f"pending moves: {len(reply.pending_moves)}")
    for move in reply.pending_moves:
        print(f"  {move.study_uid} -> {move.to_tier} ({move.detail}, op {move.op_id})")
    print(f"failed moves: {len(reply.failed_moves)}")
    for move in reply.failed_moves:
        print(f"  {move.study_uid} -> {move.to_tier}: {move.detail}")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "set":
        if not args.file:
            print("error: tier policy set needs a FILE", file=sys.stderr)
            return 2
        reply = client.set_policy(Path(args.file).read_text())
        print(f"lifecycle rules version {reply.version}: {', '.join(reply.rule_names)}")
        return 0
    reply = client.get_policy()
    print(f"# lifecycle rules version {reply.version}")
    print(reply.text or "# (no rules)")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    reply = _client(args).apply_policy(args.dry_run, args.confirm)
    share = reply.planned_bytes / reply.archive_bytes if reply.archive_bytes else 0
    verb = "would move" if args.dry_run else "planned"
    print(
        f"rules version {reply.policy_version}: {verb} {len(reply.planned)} studies, "
        f"{reply.planned_bytes} bytes ({share:.1%} of the archive)"
    )
    for move in reply.planned:
        print(
            f"  {move.study_uid} {','.join(move.from_tiers)} -> {move.to_tier} "
            f"{move.bytes} bytes (rule {move.rule})"
        )
    if args.dry_run and reply.needs_confirmation:
        print("above lifecycle.max_share: applying needs --confirm")
    if not args.dry_run:
        print(f"moved {len(reply.moved)} studies, {len(reply.failed)} failed")
        for failed in reply.failed:
            print(f"  failed {failed.study_uid}: {failed.detail}")
    return 1 if reply.failed else 0


def register(subparsers: Any) -> None:
    """Add ``tier move`` and ``tier status`` to the command line."""
    tier = subparsers.add_parser("tier", help="tiers: move studies, show usage")
    actions = tier.add_subparsers(dest="tier_command", required=True)

    p = actions.add_parser("move", help="move one study to another tier")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.add_argument("--study", required=True, help="Study Instance UID")
    p.add_argument("--to", required=True, help="target tier, e.g. cold")
    p.set_defaults(func=cmd_move)

    p = actions.add_parser("policy", help="show or replace the lifecycle rules")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.add_argument("action", choices=("get", "set"))
    p.add_argument("file", nargs="?", help="TOML or JSON rules (for set)")
    p.set_defaults(func=cmd_policy)

    p = actions.add_parser("apply", help="apply the lifecycle rules now")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.add_argument("--dry-run", action="store_true", help="only say what would move")
    p.add_argument(
        "--confirm",
        action="store_true",
        help="go ahead although the run is above lifecycle.max_share",
    )
    p.set_defaults(func=cmd_apply)

    p = actions.add_parser("status", help="per tier: studies, instances, bytes")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.set_defaults(func=cmd_status)
