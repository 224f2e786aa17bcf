"""The ``dicomvault`` command line."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from dicomvault.tools import (
    cli_crypto,
    cli_deid,
    cli_query,
    cli_replication,
    cli_retention,
    cli_tier,
)
from dicomvault.tools.client_security import add_connection_options

DEFAULT_SERVER = "127.0.0.1:50051"


def _files(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def parse_frames(spec: str) -> list[int]:
    """``1,3-5`` -> [1, 3, 4, 5]."""
    numbers: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError
                numbers.extend(range(low, high + 1))
            else:
                numbers.append(int(part))
        except ValueError:
            raise SystemExit(
                f"error: bad frame list {spec!r}; use e.g. 1,3-5"
            ) from None
    return numbers


# -- server -------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from dicomvault.archive.config import ConfigError, load_settings

    try:
        settings = load_settings(
            Path(args.config) if args.config else None,
            {
                "server.data_dir": args.data,
                "server.grpc_port": args.grpc_port,
                "server.grpc_host": args.grpc_host,
                "http.port": args.http_port,
            },
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.get("server.log_level"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Imported only now: the server's imports take seconds, and a bad setting
    # should be reported at once.
    from dicomvault.tools.server import run_server

    started = threading.Event()

    def ready(address: str) -> None:
        started.set()
        if args.ingest_samples:
            threading.Thread(
                target=_ingest_samples,
                args=(address, settings.data_dir, _web_url(settings)),
                daemon=True,
            ).start()
        else:
            _announce(address, settings.data_dir, _web_url(settings))

    try:
        run_server(settings, on_ready=ready)
    except (OSError, RuntimeError) as err:
        if started.is_set():
            raise
        # grpcio raises RuntimeError("Failed to bind ...") for a taken port;
        # a start-up failure is a message for the operator, not a traceback.
        detail = str(err).rstrip(".")
        if "bind" in detail.lower():
            detail += "; is the port in use? choose another with --grpc-port"
        print(f"error: the server did not start: {detail}", file=sys.stderr)
        return 1
    return 0


def _web_url(settings: Any) -> str:
    port = settings.get("http.port")
    if not port:
        return "a free port (see the server.started log line)"
    base = settings.get("http.base_path").rstrip("/")
    return f"http://{settings.get('http.host')}:{port}{base}"


def _announce(address: str, data_dir: Path, web: str) -> None:
    exe = Path(sys.argv[0]).name if sys.argv else "dicomvault"
    print(
        f"\ndicomvault is serving gRPC on {address} and DICOMweb on {web}\n"
        f"  data:  {data_dir}\n"
        f"  try:   {exe} ls --server {address}\n"
        f"         curl {web}/studies\n"
        f"  stop:  Ctrl-C here, or kill {os.getpid()}\n",
        flush=True,
    )


def _ingest_samples(address: str, data_dir: Path, web: str) -> None:
    from dicomvault.tools.client import OUTCOME_NAMES, Client
    from dicomvault.tools.samples import pydicom_test_files

    client = Client(address)
    files = pydicom_test_files()
    try:
        results = client.store(files)
    finally:
        client.close()
    counts: dict[str, int] = {}
    for result in results:
        name = OUTCOME_NAMES[result.outcome]
        counts[name] = counts.get(name, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(
        f"\ningested {len(files)} sample files bundled with pydicom: {summary}",
        flush=True,
    )
    _announce(address, data_dir, web)


# -- clients ------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from dicomvault.tools.client import Client
    from dicomvault.tools.client_security import security_from_args

    return Client(args.server, security_from_args(args))


def cmd_ingest(args: argparse.Namespace) -> int:
    from dicomvault.tools.client import OUTCOME_NAMES, upload_messages

    files = list(_files(args.paths))
    missing = [f for f in files if not f.exists()]
    if missing:
        print(f"error: no such file: {missing[0]}", file=sys.stderr)
        return 2
    client = _client(args)
    show_bar = sys.stderr.isatty() and not args.json
    counts = {"stored": 0, "duplicate": 0, "rejected": 0, "stored_new_version": 0}
    rejected: list[tuple[str, str]] = []
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", desc="ingest")
    # One stream per batch keeps the reply (and memory) bounded.
    batch = 64
    for i in range(0, len(files), batch):
        chunk = files[i : i + batch]
        results = client.archive.Store(upload_messages(chunk)).results
        for result in results:
            outcome = OUTCOME_NAMES[result.outcome]
            counts[outcome] += 1
            if outcome == "rejected":
                rejected.append((result.label, result.reason))
            if args.json:
                print(
                    json.dumps(
                        {
                            "file": result.label,
                            "outcome": outcome,
                            "reason": result.reason,
                            "sop_instance_uid": result.sop_instance_uid,
                            "sha256": result.sha256,
                            "size": result.size,
                            "version": result.version,
                        }
                    ),
                    flush=True,
                )
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    if not args.json:
        print(
            f"stored {counts['stored'] + counts['stored_new_version']}, "
            f"duplicate {counts['duplicate']}, rejected {counts['rejected']}"
        )
        for label, reason in rejected:
            print(f"  rejected {label}: {reason}")
    return 1 if rejected else 0


def cmd_get(args: argparse.Namespace) -> int:
    if not Path(args.output).resolve().parent.is_dir():
        print(
            f"error: folder {Path(args.output).parent} does not exist", file=sys.stderr
        )
        return 2
    client = _client(args)
    info = client.retrieve(args.sop_instance_uid, Path(args.output), args.version or "")
    print(f"{args.output}: {info.size} bytes, sha256 {info.sha256}")
    return 0


def cmd_frames(args: argparse.Namespace) -> int:
    import numpy as np

    client = _client(args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    numbers = parse_frames(args.frames) if args.frames else []
    for number, pixel, data in client.frames(
        args.sop_instance_uid, numbers, args.decode
    ):
        shape = tuple(pixel.shape)
        if args.decode:
            path = out / f"frame_{number:05d}.npy"
            np.save(path, np.frombuffer(data, dtype=pixel.dtype).reshape(shape))
        else:
            path = out / f"frame_{number:05d}.{'raw' if pixel.dtype else 'bin'}"
            path.write_bytes(data)
        print(
            f"frame {number}: {pixel.rows}x{pixel.columns}x{pixel.samples_per_pixel} "
            f"shape={list(shape) or '-'} dtype={pixel.dtype or '-'} "
            f"transfer_syntax={pixel.transfer_syntax_uid} bytes={len(data)} -> {path}"
        )
    return 0


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value", [])
    out = []
    for v in values:
        out.append(v.get("Alphabetic", "") if isinstance(v, dict) else str(v))
    return "\\".join(out)


def cmd_ls(args: argparse.Namespace) -> int:
    from dicomvault.proto import archive_pb2

    client = _client(args)
    if args.series:
        rows = client.search(archive_pb2.INSTANCE, {"SeriesInstanceUID": args.series})
        print(f"instances of series {args.series}: {len(rows)}")
        for r in rows:
            print(
                f"  {_value(r, '00080018')}  number={_value(r, '00200013') or '-'} "
                f"frames={_value(r, '00280008') or '-'}"
            )
        return 0
    if args.study:
        rows = client.search(archive_pb2.SERIES, {"StudyInstanceUID": args.study})
        print(f"series of study {args.study}: {len(rows)}")
        for r in rows:
            print(
                f"  {_value(r, '0020000E')}  modality={_value(r, '00080060') or '-'} "
                f"instances={_value(r, '00201209')}"
            )
        return 0
    patients = client.search(archive_pb2.PATIENT, {})
    studies = client.search(archive_pb2.STUDY, {})
    print(
        f"patients {len(patients)}, studies {len(studies)}, "
        f"series {sum(int(_value(s, '00201206') or 0) for s in studies)}, "
        f"instances {sum(int(_value(s, '00201208') or 0) for s in studies)}"
    )
    for s in studies:
        print(
            f"  study {_value(s, '0020000D')}  date={_value(s, '00080020') or '-'} "
            f"modalities={_value(s, '00080061') or '-'} series={_value(s, '00201206')} "
            f"instances={_value(s, '00201208')}"
        )
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    client = _client(args)
    columns, rows = client.sql(args.statement)
    if args.format == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True))))
    elif args.format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        cells = [[("" if v is None else str(v)) for v in row] for row in rows]
        widths = [
            max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)
        ]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        print(f"({len(rows)} rows)")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    reply = _client(args).rebuild_index()
    print(
        f"index rebuilt from storage: {reply.instances} instances, "
        f"{reply.studies} studies in {reply.seconds:.2f} s"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    reply = _client(args).verify(args.repair)
    print(
        f"verified {reply.instances_checked} instance versions, "
        f"{reply.objects_checked} objects, {reply.bytes_checked} bytes"
    )
    damage = 0
    for p in reply.problems:
        state = "repaired" if p.repaired else "found"
        print(f"  {p.kind} ({state}) tier={p.tier} key={p.key}: {p.detail}")
        if not p.repaired:
            damage += 1
    print(
        "no problems found"
        if not reply.problems
        else f"{len(reply.problems)} problem(s)"
    )
    return 1 if damage else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicomvault", description="A vendor-neutral archive core for DICOM."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--data", help="data folder (server.data_dir)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (server.grpc_port)")
    p.add_argument("--grpc-host", help="gRPC bind address (server.grpc_host)")
    p.add_argument("--http-port", type=int, help="DICOMweb port (http.port)")
    p.add_argument(
        "--ingest-samples",
        action="store_true",
        help="after start, ingest the DICOM files bundled with pydicom",
    )
    p.set_defaults(func=cmd_serve)

    def client_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        cp = sub.add_parser(name, help=help_text)
        cp.add_argument(
            "--server", default=DEFAULT_SERVER, help="HOST:PORT of the server"
        )
        add_connection_options(cp)
        return cp

    p = client_parser("ingest", "store DICOM files and folders")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=cmd_ingest)

    p = client_parser("get", "retrieve one instance bit-exact")
    p.add_argument("sop_instance_uid")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--version", help="a stored version id (default: current)")
    p.set_defaults(func=cmd_get)

    p = client_parser("frames", "retrieve frames of an instance")
    p.add_argument("sop_instance_uid")
    p.add_argument("--frames", help="frame numbers, e.g. 1,3-5 (default: all)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--decode", action="store_true", help="decode to .npy arrays")
    p.set_defaults(func=cmd_frames)

    p = client_parser("ls", "list patients, studies, series and instances")
    p.add_argument("--study")
    p.add_argument("--series")
    p.set_defaults(func=cmd_ls)

    p = client_parser("sql", "run read-only SQL over the index")
    p.add_argument("statement")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_sql)

    p = client_parser("index", "index maintenance")
    p.add_argument("action", choices=("rebuild",))
    p.set_defaults(func=cmd_index)

    p = client_parser("verify", "re-hash every stored object")
    p.add_argument(
        "--repair", action="store_true", help="remove leftovers of interrupted writes"
    )
    p.set_defaults(func=cmd_verify)
    cli_deid.register(sub)
    cli_crypto.register(sub)
    cli_replication.register(sub)
    cli_tier.register(sub)
    cli_retention.register(sub)
    cli_query.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dicomvault`` command."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `dicomvault ls | head` ends quietly
    try:
        return int(args.func(args))
    except grpc.RpcError as err:
        code = err.code()
        detail = err.details()
        if code == grpc.StatusCode.UNAVAILABLE:
            print(
                "error: cannot reach the server at "
                f"{getattr(args, 'server', '?')}: {detail}",
                file=sys.stderr,
            )
        else:
            print(f"error: {code.name}: {detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
