"""Command line for analysts: extended query attributes and Parquet export.

``dicomvault attributes add SliceThickness`` adds a tag to the index;
``dicomvault attributes list`` shows them; ``dicomvault export parquet --to
URL`` writes the metadata tables as Parquet where the server can reach.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_SERVER = "127.0.0.1:50051"


def _query_stub(args: argparse.Namespace) -> Any:
    from dicomvault.tools.client import Client

    return Client(args.server).query


def cmd_attribute_add(args: argparse.Namespace) -> int:
    from dicomvault.proto import analytics_pb2

    a = _query_stub(args).AddExtendedAttribute(
        analytics_pb2.AddExtendedAttributeRequest(attribute=args.attribute, vr=args.vr)
    )
    print(
        f"added {a.keyword} ({a.tag}, VR {a.vr}) as instances.{a.column} "
        f"{a.sql_type}: {a.filled} instances filled in {a.seconds:.2f} s"
    )
    return 0


def cmd_attribute_list(args: argparse.Namespace) -> int:
    from dicomvault.proto import analytics_pb2

    reply = _query_stub(args).ListExtendedAttributes(
        analytics_pb2.ListExtendedAttributesRequest()
    )
    for a in reply.attributes:
        print(f"{a.tag}  {a.keyword}  {a.vr}  {a.column}  {a.sql_type}")
    if not reply.attributes:
        print("no extended attributes")
    return 0


def cmd_export_parquet(args: argparse.Namespace) -> int:
    from dicomvault.proto import analytics_pb2

    reply = _query_stub(args).ExportParquet(
        analytics_pb2.ExportParquetRequest(url=args.to)
    )
    for t in reply.tables:
        print(f"{t.table}: {t.rows} rows -> {t.url}")
    print(f"exported {len(reply.tables)} tables in {reply.seconds:.2f} s")
    return 0


def register(sub: Any) -> None:
    """Add the ``attributes`` and ``export`` commands to the parser."""

    def with_server(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--server", default=DEFAULT_SERVER, help="HOST:PORT of the server"
        )
        return p

    attributes = sub.add_parser("attributes", help="extended query attributes")
    actions = attributes.add_subparsers(dest="action", required=True)
    p = with_server(actions.add_parser("add", help="index a tag as a column"))
    p.add_argument("attribute", help="keyword (SliceThickness) or tag GGGGEEEE")
    p.add_argument("--vr", default="", help="VR, required for private tags")
    p.set_defaults(func=cmd_attribute_add)
    p = with_server(actions.add_parser("list", help="list extended attributes"))
    p.set_defaults(func=cmd_attribute_list)

    export = sub.add_parser("export", help="export the metadata index")
    formats = export.add_subparsers(dest="format", required=True)
    p = with_server(formats.add_parser("parquet", help="tables as Parquet files"))
    p.add_argument(
        "--to", required=True, help="fsspec URL of a folder, as the server sees it"
    )
    p.set_defaults(func=cmd_export_parquet)
