"""``dicomvault tier``: move studies between tiers and show what each holds."""

from __future__ import annotations

import argparse
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


def register(subparsers: Any) -> None:
    """Add ``tier move`` and ``tier status`` to the command line."""
    tier = subparsers.add_parser("tier", help="tiers: move studies, show usage")
    actions = tier.add_subparsers(dest="tier_command", required=True)

    p = actions.add_parser("move", help="move one study to another tier")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.add_argument("--study", required=True, help="Study Instance UID")
    p.add_argument("--to", required=True, help="target tier, e.g. cold")
    p.set_defaults(func=cmd_move)

    p = actions.add_parser("status", help="per tier: studies, instances, bytes")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.set_defaults(func=cmd_status)
