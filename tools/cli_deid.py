"""``dicomvault deid``: a de-identified copy of one study (PS3.15 Annex E)."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_SERVER = "127.0.0.1:50051"


def cmd_deid(args: argparse.Namespace) -> int:
    from dicomvault.proto import deid_pb2
    from dicomvault.tools.client import Client

    client = Client(args.server)
    reply = client.admin.DeidentifyStudy(
        deid_pb2.DeidentifyStudyRequest(
            study_uid=args.study,
            profile=args.profile,
            keep_dates=args.keep_dates,
            keep_uids=args.keep_uids,
            keep_device=args.keep_device,
            keep_institution=args.keep_institution,
            keep_patient_characteristics=args.keep_patient_characteristics,
            keep_private_tags=args.keep_private or [],
            to=args.to,
        )
    )
    print(f"study {reply.new_study_uid}: {len(reply.keys)} instance(s) written")
    for item in reply.burned_in:
        print(f"  burned-in text possible: {item.sop_instance_uid}: {item.reason}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``deid`` command."""
    p = subparsers.add_parser(
        "deid", help="write a de-identified copy of a study (PS3.15 Annex E)"
    )
    p.add_argument("--server", default=DEFAULT_SERVER, help="HOST:PORT of the server")
    p.add_argument("--study", required=True, help="Study Instance UID")
    p.add_argument("--profile", default="basic", choices=["basic"])
    p.add_argument("--keep-dates", action="store_true", help="Retain Full Dates")
    p.add_argument("--keep-uids", action="store_true", help="Retain UIDs option")
    p.add_argument("--keep-device", action="store_true", help="Retain Device Identity")
    p.add_argument(
        "--keep-institution", action="store_true", help="Retain Institution Identity"
    )
    p.add_argument(
        "--keep-patient-characteristics",
        action="store_true",
        help="Retain Patient Characteristics",
    )
    p.add_argument(
        "--keep-private",
        action="append",
        metavar="GGGG,EEEE",
        help="a private tag to keep (repeatable)",
    )
    p.add_argument("--to", required=True, help="tier name, file:///path or s3://...")
    p.set_defaults(func=cmd_deid)
