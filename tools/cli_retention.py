"""``dicomvault retention`` and ``dicomvault hold``: what may go, what may not."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_SERVER = "127.0.0.1:50051"


def _client(args: argparse.Namespace) -> Any:
    from dicomvault.tools.client import Client

    return Client(args.server)


def _print_due(reply: Any) -> None:
    print(f"{len(reply.due)} studies due")
    for due in reply.due:
        state = " (held: kept)" if due.held else ""
        print(f"  {due.study_uid} {due.bytes} bytes, rule {due.rule}{state}")


def cmd_retention(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "apply":
        reply = client.apply_retention(args.confirm)
        print(f"marked {len(reply.due)} studies deleted (restorable until the purge)")
        for due in reply.due:
            print(f"  {due.study_uid} {due.bytes} bytes, rule {due.rule}")
        return 0
    if args.action == "purge":
        reply = client.purge_due()
        print(f"purged {reply.instances} instances")
        return 0
    if args.action == "set":
        if not args.file:
            print("error: retention set needs a FILE", file=sys.stderr)
            return 2
        _print_due(client.set_retention(Path(args.file).read_text()))
    else:
        _print_due(client.preview_retention())
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    if args.action != "list" and not (args.study or args.patient):
        print(
            "error: hold add|remove needs --study UID or --patient ID", file=sys.stderr
        )
        return 2
    kind, value = ("study", args.study) if args.study else ("patient", args.patient)
    reply = _client(args).hold(args.action, kind, value or "", args.reason)
    print(f"{len(reply.holds)} legal holds")
    for hold in reply.holds:
        print(f"  {hold.kind} {hold.value} since {hold.since}: {hold.reason}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``retention`` and ``hold`` to the command line."""
    p = subparsers.add_parser("retention", help="retention rules and their preview")
    p.add_argument("action", choices=("preview", "set", "apply", "purge"))
    p.add_argument("file", nargs="?", help="TOML or JSON rules (for set)")
    p.add_argument(
        "--confirm",
        action="store_true",
        help="apply: go ahead although the run is above lifecycle.max_share",
    )
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.set_defaults(func=cmd_retention)

    p = subparsers.add_parser("hold", help="legal holds on a study or a patient")
    p.add_argument("action", choices=("add", "remove", "list"))
    p.add_argument("--study", help="Study Instance UID")
    p.add_argument("--patient", help="Patient ID")
    p.add_argument("--reason", default="", help="why (kept with the hold)")
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.set_defaults(func=cmd_hold)
