"""``python -m dicomvault.tools.bench``: run the benchmark and write its report.

By default the benchmark re-executes itself inside ``unshare --net`` (root
only), where loopback is the only interface, and starts every server there.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dicomvault.tools.bench import peers
from dicomvault.tools.bench.generator import BenchData, Sizes, generate
from dicomvault.tools.bench.grpc_bench import run_grpc_suite
from dicomvault.tools.bench.measure import Plan, run_dicomweb_suite
from dicomvault.tools.bench.report import (
    build_rows,
    format_table,
    write_chart,
    write_json,
)
from dicomvault.tools.bench.results import Results

ROOT = Path(__file__).resolve().parent.parent.parent


def default_corpus() -> Path:
    env = os.environ.get("DICOMVAULT_TEST_CORPUS")
    return Path(env) if env else ROOT.parent / "shared" / "corpus"


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dicomvault-bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dicomvault.tools.bench",
        description="Benchmark dicomvault against Orthanc on the same data.",
    )
    parser.add_argument("--quick", action="store_true", help="small data, few frames")
    parser.add_argument("--out", default="bench-results", help="report folder")
    parser.add_argument("--cache", default=str(default_cache()), help="data cache")
    parser.add_argument("--corpus", default=str(default_corpus()))
    parser.add_argument("--seed", type=int, default=1386)
    parser.add_argument(
        "--peers",
        default="dicomvault,orthanc",
        help="comma-separated: dicomvault, orthanc",
    )
    parser.add_argument(
        "--no-netns",
        action="store_true",
        help="stay in this network namespace (Orthanc is then skipped)",
    )
    return parser


def run_peer(
    results: Results,
    peer: peers.OrthancPeer | peers.DicomvaultPeer,
    data: BenchData,
    corpus: list[Path],
    plan: Plan,
) -> None:
    """Start one peer, run the DICOMweb suite on it, stop it, record its usage."""
    try:
        peer.start()
    except peers.PeerUnavailable as err:
        results.note(str(err))
        return
    try:
        if peer.dicomweb_url is None:
            results.note(
                f"{peer.name}: no DICOMweb endpoint in this build; its DICOMweb "
                "rows are skipped"
            )
            return
        run_dicomweb_suite(results, peer, data, corpus, plan)
    finally:
        usage = peer.stop()
    if peer.dicomweb_url is not None:
        results.put(peer.name, "server.peak_rss_bytes", usage.peak_rss_bytes)
        results.put(peer.name, "server.cpu_seconds", usage.cpu_seconds)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    wanted = set(args.peers.split(","))
    if not args.no_netns and not peers.in_private_netns():
        if os.geteuid() == 0 and shutil.which("unshare"):
            return int(peers.reexec_in_netns(argv))
        print(
            "not root or no unshare: staying in this namespace; Orthanc is skipped",
            file=sys.stderr,
        )
    results = Results()
    sizes = Sizes.quick() if args.quick else Sizes.full()
    plan = Plan(
        random_frames=10 if args.quick else 50,
        repeats=5 if args.quick else 20,
        seed=args.seed,
    )
    started = time.time()
    print(f"generating data (cached in {args.cache})", flush=True)
    data = generate(Path(args.cache), args.seed, sizes)
    corpus_dir = Path(args.corpus)
    corpus = sorted(corpus_dir.glob("*.dcm")) if corpus_dir.is_dir() else []
    if not corpus:
        results.note(f"no real corpus at {corpus_dir}; only generated data is used")
    workdir = Path(tempfile.mkdtemp(prefix="dicomvault-bench-"))
    try:
        if "dicomvault" in wanted:
            grpc_dir = workdir / "dicomvault-grpc"
            grpc_dir.mkdir()
            grpc_peer = peers.DicomvaultPeer(grpc_dir).start()
            try:
                print("dicomvault: gRPC Store and GetFrames", flush=True)
                assert grpc_peer.grpc_address is not None
                run_grpc_suite(results, grpc_peer.grpc_address, data)
            finally:
                usage = grpc_peer.stop()
            results.put(
                "dicomvault", "grpc.server.peak_rss_bytes", usage.peak_rss_bytes
            )
            results.put("dicomvault", "grpc.server.cpu_seconds", usage.cpu_seconds)
        for name, cls in (
            ("dicomvault", peers.DicomvaultPeer),
            ("orthanc", peers.OrthancPeer),
        ):
            if name in wanted:
                folder = workdir / name
                folder.mkdir()
                run_peer(results, cls(folder), data, corpus, plan)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = build_rows(results)
    table = format_table(rows)
    mode = "quick" if args.quick else "full"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = {
        "date": stamp,
        "mode": mode,
        "seed": args.seed,
        "sizes": {
            "ct_instances": sizes.ct_instances,
            "mr_frames": sizes.mr_frames,
            "mixed_studies": sizes.mixed_studies,
            "corpus_files": len(corpus),
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "seconds": round(time.time() - started, 1),
    }
    write_json(out / "bench.json", results, rows, meta)
    (out / "bench.txt").write_text(table + "\n")
    write_chart(out / "bench.png", rows, f"dicomvault advantage, {mode} run, {stamp}")
    print(table)
    for text in results.notes:
        print(f"note: {text}")
    print(f"report written to {out}/bench.txt, bench.json, bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
