"""Benchmark of the metadata index at a million instances (not a test).

Builds a seeded synthetic index in a temporary folder, without pixel data:
rows go straight into a real :class:`MetadataIndex` with DuckDB bulk inserts
(10,000 patients, 1 to 8 studies each, 1 to 9 series per study, 1 to 2
instances per CR/DX series and 1 to 14 for the other modalities, a small
DICOM JSON per instance). Then it measures the median of repeated searches
by patient ID, by date range plus modality and by wildcard name, a group-by
over every instance by modality and month, the back-fill of an extended
attribute, and the size of the index file.

Run with ``make bench-index`` or ``python -m dicomvault.tools.bench_index``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from dicomvault.archive.index import extended
from dicomvault.archive.index.metadata import MetadataIndex
from dicomvault.archive.search import search

FAMILY = [
    "SMITH", "JONES", "MUELLER", "GARCIA", "ROSSI", "DUBOIS", "NOVAK", "TANAKA",
    "KIM", "SILVA", "NGUYEN", "IVANOV", "MURPHY", "JANSEN", "LARSEN", "KOWALSKI",
    "HASSAN", "PATEL", "CHEN", "SMYTHE",
]  # fmt: skip
GIVEN = ["ANNA", "JOHN", "MARIA", "PETER", "LENA", "OMAR", "YUKI", "PAUL", "ZOE"]
# Modality and share of series, in percent.
MODALITIES = [("CT", 30), ("MR", 30), ("CR", 15), ("US", 10), ("DX", 10), ("PT", 5)]


def _generate(index: MetadataIndex, patients: int, seed: int) -> None:
    """Fill the four tables with seeded rows, in DuckDB, in one transaction."""
    families = "[" + ", ".join(f"'{f}'" for f in FAMILY) + "]"
    givens = "[" + ", ".join(f"'{g}'" for g in GIVEN) + "]"
    cases, low = [], 0
    for modality, share in MODALITIES:
        cases.append(f"WHEN h % 100 < {low + share} THEN '{modality}'")
        low += share
    modality_case = "CASE " + " ".join(cases) + " END"

    with index.writing() as cur:
        cur.execute(f"""
            INSERT INTO patients
            SELECT '|P' || lpad(p::VARCHAR, 7, '0'), 'P' || lpad(p::VARCHAR, 7, '0'),
                   NULL,
                   {families}[1 + CAST(hash(p, {seed}) % {len(FAMILY)} AS BIGINT)]
                       || '^' || {givens}[
                           1 + CAST(hash(p, {seed} + 1) % {len(GIVEN)} AS BIGINT)],
                   DATE '1930-01-01' + CAST(hash(p, {seed} + 2) % 30000 AS INTEGER),
                   CASE WHEN hash(p, {seed} + 3) % 2 = 0 THEN 'F' ELSE 'M' END
            FROM range({patients}) t(p)
        """)
        cur.execute(f"""
            INSERT INTO studies
            SELECT '2.25.' || (hash(p, s, {seed}) % 100000000000000000)::VARCHAR,
                   pa.patient_key, pa.patient_id, pa.patient_name,
                   DATE '2012-01-01' + CAST(hash(p, s, {seed} + 4) % 5000 AS INTEGER),
                   lpad((hash(p, s, {seed} + 5) % 240000)::VARCHAR, 6, '0'),
                   'A' || (hash(p, s, {seed} + 6) % 100000000)::VARCHAR,
                   s::VARCHAR, 'STUDY ' || s::VARCHAR, 'REFERRER^' || (p % 50)::VARCHAR
            FROM (SELECT p, unnest(range(1 + CAST(hash(p, {seed} + 7) % 8 AS BIGINT))) s
                  FROM range({patients}) t(p)) x
            JOIN patients pa ON pa.patient_id = 'P' || lpad(p::VARCHAR, 7, '0')
        """)
        cur.execute(f"""
            INSERT INTO series
            SELECT study_uid || '.' || n::VARCHAR, study_uid, modality, n,
                   modality || ' SERIES ' || n::VARCHAR, NULL, study_date
            FROM (
                SELECT study_uid, study_date, n,
                       {modality_case.replace("h %", "hash(study_uid, n) %")}
                           AS modality
                FROM (SELECT study_uid, study_date,
                             unnest(range(1, 2 + CAST(hash(study_uid) % 9 AS BIGINT))) n
                      FROM studies)
            )
        """)
        cur.execute(f"""
            INSERT INTO instances
            SELECT series_uid || '.' || k::VARCHAR, series_uid, study_uid,
                   '1.2.840.10008.5.1.4.1.1.' || CASE modality WHEN 'CT' THEN '2'
                       WHEN 'MR' THEN '4' ELSE '7' END,
                   k, '1.2.840.10008.1.2.1', 512, 512, 1, 16, 524288 + 2048,
                   md5(series_uid || k::VARCHAR) || md5(k::VARCHAR), 'hot', 'v1',
                   TIMESTAMP '2024-01-01 00:00:00', 'BENCH',
                   '{{"00080060":{{"vr":"CS","Value":["' || modality || '"]}},'
                   || '"00080070":{{"vr":"LO","Value":["VENDOR'
                   || (hash(series_uid) % 5)::VARCHAR || '"]}},'
                   || '"00180050":{{"vr":"DS","Value":['
                   || (0.5 + (hash(series_uid, {seed}) % 10) / 2)::VARCHAR || ']}},'
                   || '"00200013":{{"vr":"IS","Value":[' || k::VARCHAR || ']}}}}'
            FROM (
                SELECT series_uid, study_uid, modality,
                       unnest(range(1, 2 + CASE WHEN modality IN ('CR', 'DX')
                           THEN CAST(hash(series_uid) % 2 AS BIGINT)
                           ELSE CAST(hash(series_uid) % 14 AS BIGINT) END)) k
                FROM series
            )
            ORDER BY study_uid, series_uid, k
        """)
    index.cursor().execute("CHECKPOINT")


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm caches once
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Build the index, run the measurements and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        path = Path(tmp) / "metadata.duckdb"
        index = MetadataIndex(path)
        started = time.perf_counter()
        _generate(index, args.patients, args.seed)
        cur = index.cursor()
        counts = [
            cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("patients", "studies", "series", "instances")
        ]
        print(
            f"built {counts[3]:,} instances, {counts[2]:,} series, "
            f"{counts[1]:,} studies, {counts[0]:,} patients "
            f"in {time.perf_counter() - started:.1f} s"
        )

        def by_patient() -> object:
            pid = f"P{rng.randrange(args.patients):07d}"
            return search(index, "STUDY", {"PatientID": pid}, [], 100, 0, False)

        def by_date_and_modality() -> object:
            month = rng.randrange(1, 13)
            year = rng.randrange(2012, 2025)
            match = {
                "StudyDate": f"{year}{month:02d}01-{year}{month:02d}28",
                "ModalitiesInStudy": "MR",
            }
            return search(index, "STUDY", match, [], 100, 0, False)

        def by_wildcard_name() -> object:
            name = rng.choice(FAMILY)[:3].lower() + "*^" + rng.choice(GIVEN)[0] + "*"
            return search(index, "STUDY", {"PatientName": name}, [], 100, 0, False)

        def group_by() -> object:
            return cur.execute(
                "SELECT se.modality, date_trunc('month', st.study_date) AS month, "
                "count(*) FROM instances i "
                "JOIN series se ON se.series_uid = i.series_uid "
                "JOIN studies st ON st.study_uid = i.study_uid "
                "GROUP BY ALL"
            ).fetchall()

        for label, run, repeats in (
            ("search by patient ID", by_patient, args.repeats),
            ("search by date range + modality", by_date_and_modality, args.repeats),
            ("search by wildcard name", by_wildcard_name, args.repeats),
            ("group-by modality x month, all instances", group_by, 5),
        ):
            print(f"{label}: median {_median_ms(run, repeats):.1f} ms")

        added = extended.add_attribute(index, "SliceThickness")
        print(
            f"extended attribute back-fill (SliceThickness, {added.filled:,} rows): "
            f"{added.seconds:.2f} s"
        )
        index.cursor().execute("CHECKPOINT")
        index.close()
        print(f"index size: {path.stat().st_size / 2**20:.0f} MiB")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average at the end (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
