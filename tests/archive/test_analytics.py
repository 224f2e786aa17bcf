"""Analyst features over real corpus files: extended attributes, the SQL
schema and its tag macros, Arrow batches, and Parquet export."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pydicom
import pytest

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import (
    InvalidInputError,
    LimitExceededError,
    RefusedError,
)
from dicomvault.archive.service import Archive

# A handful of files with and without SliceThickness, from several vendors.
FILES = (
    "mr_brain_siemens_trio_implicit_le.dcm",
    "ct_wg04_ct1_explicit_be.dcm",
    "mr_brain_canon_enhanced_520frames.dcm",
    "xa_multiframe_96frames_jpeg_bot.dcm",
)
LATE = "mr_brain_siemens_trio_rle.dcm"


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[Archive]:
    data = tmp_path_factory.mktemp("analytics") / "data"
    limits = {"sql.timeout_seconds": 2.0, "sql.max_rows": 50}
    settings = load_settings(
        overrides={"server.data_dir": str(data), **limits}, environ={}
    )
    archive = Archive.open(settings)
    for name in FILES:
        archive.store_file(corpus / name)
    for path in sorted((corpus / "series_mr_brain_ge_t1_mprage").glob("*.dcm"))[:5]:
        archive.store_file(path)
    yield archive
    archive.close()
    shutil.rmtree(data, ignore_errors=True)


def _rows(archive: Archive, sql: str) -> list[list[object]]:
    return [row for batch in archive.sql(sql) for row in batch.rows]


class TestExtendedAttributes:
    def test_private_tag_without_vr_is_refused(self, archive) -> None:
        """A private tag needs its VR; the message says how to give it."""
        with pytest.raises(InvalidInputError, match="give the VR"):
            archive.add_extended_attribute("00191012")

    def test_unknown_keyword_is_refused(self, archive) -> None:
        """A word that is no DICOM keyword is refused by name."""
        with pytest.raises(InvalidInputError, match="'SliceThicknes' is not a DICOM"):
            archive.add_extended_attribute("SliceThicknes")

    def test_backfill_types_every_instance_and_later_ones(
        self, archive, corpus
    ) -> None:
        """SliceThickness becomes a DOUBLE column, filled for old and new rows."""
        before = {
            r[0]: r[1]
            for r in _rows(
                archive,
                "SELECT sop_instance_uid, dicom_number(dicom_json, 'SliceThickness') "
                "FROM instances",
            )
        }
        added = archive.add_extended_attribute("SliceThickness")
        assert (added.column, added.sql_type) == ("x_slice_thickness", "DOUBLE")
        assert added.filled == sum(1 for v in before.values() if v is not None) > 0

        after = dict(
            _rows(archive, "SELECT sop_instance_uid, x_slice_thickness FROM instances")
        )
        assert after == before

        archive.store_file(corpus / LATE)
        ds = _read(corpus / LATE)
        late = _rows(
            archive,
            "SELECT x_slice_thickness FROM instances "
            f"WHERE sop_instance_uid = '{ds.SOPInstanceUID}'",
        )
        assert late == [[float(ds.SliceThickness)]]

        with pytest.raises(RefusedError, match="already an extended attribute"):
            archive.add_extended_attribute("00180050")
        assert [a.keyword for a in archive.extended_attributes()] == ["SliceThickness"]

    def test_search_matches_through_the_extended_column(self, archive) -> None:
        """Search on an extended attribute uses its column and finds its rows."""
        want = {
            r[0]
            for r in _rows(
                archive,
                "SELECT sop_instance_uid FROM instances WHERE x_slice_thickness = 1.2",
            )
        }
        page = archive.search("INSTANCE", {"SliceThickness": "1.2"}, limit=1000)
        assert want and {r["00080018"]["Value"][0] for r in page.results} == want


class TestSchema:
    def test_tag_macros_read_any_attribute_by_keyword(self, archive, corpus) -> None:
        """dicom(), dicom_number() and dicom_values() agree with pydicom."""
        ds = _read(corpus / FILES[0])
        uid = ds.SOPInstanceUID
        row = _rows(
            archive,
            "SELECT dicom(dicom_json, 'Manufacturer'), "
            "dicom_number(dicom_json, 'SliceThickness'), "
            "dicom_values(dicom_json, 'ImageType'), "
            "dicom(dicom_json, 'PatientName'), dicom_tag('SliceThickness') "
            f"FROM instances WHERE sop_instance_uid = '{uid}'",
        )[0]
        assert row == [
            ds.Manufacturer,
            float(ds.SliceThickness),
            list(ds.ImageType),
            str(ds.PatientName),
            "00180050",
        ]

    def test_frame_layout_and_tier_placement_cover_every_instance(
        self, archive
    ) -> None:
        """Each view has one row per instance, with frames and the tier."""
        n = _rows(archive, "SELECT count(*) FROM instances")[0][0]
        frames = _rows(
            archive,
            "SELECT count(*), max(number_of_frames) FROM frame_layout "
            "WHERE frame_bytes > 0",
        )[0]
        assert frames == [n, 520]
        assert _rows(archive, "SELECT DISTINCT tier FROM tier_placement") == [["hot"]]


class TestArrowSql:
    def test_arrow_batches_hold_the_same_rows_as_json(self, archive) -> None:
        """Arrow IPC batches decode to the rows and types of the JSON form."""
        sql = "SELECT sop_instance_uid, rows, stored_at FROM instances ORDER BY 1"
        batches = list(archive.sql(sql, batch_rows=3, arrow=True))
        assert len(batches) > 1 and batches[0].columns == [
            "sop_instance_uid",
            "rows",
            "stored_at",
        ]
        table = pa.concat_tables(
            pa.ipc.open_stream(b.arrow_ipc).read_all() for b in batches
        )
        assert table.schema.field("rows").type == pa.int32()
        assert [list(r.values()) for r in table.to_pylist()] == _rows(archive, sql)

    def test_arrow_mode_keeps_the_guards(self, archive) -> None:
        """Reading a file, too many rows and an endless query are refused."""
        with pytest.raises(RefusedError, match="no file or network access"):
            list(
                archive.sql("SELECT * FROM read_parquet('/etc/x.parquet')", arrow=True)
            )
        with pytest.raises(LimitExceededError, match="more than 50 rows"):
            list(archive.sql("SELECT * FROM range(1000)", batch_rows=10, arrow=True))
        with pytest.raises(LimitExceededError, match="ran longer than 2 s"):
            list(
                archive.sql(
                    "SELECT count(*) FROM range(100000000000) a, range(1000) b",
                    arrow=True,
                )
            )

    def test_copy_to_a_file_is_refused_and_writes_nothing(
        self, archive, tmp_path
    ) -> None:
        """COPY ... TO a file is refused before it runs."""
        target = tmp_path / "leak.parquet"
        with pytest.raises(RefusedError, match="read-only: COPY"):
            list(archive.sql(f"COPY (SELECT * FROM studies) TO '{target}'", arrow=True))
        assert not target.exists()


class TestParquetExport:
    @pytest.mark.parametrize("scheme", ["file", "memory"])
    def test_export_reads_back_equal_to_the_index(
        self, archive, tmp_path, scheme
    ) -> None:
        """Every table read back from Parquet equals the index table."""
        import fsspec

        url = f"file://{tmp_path}/export" if scheme == "file" else "memory://export"
        tables, _ = archive.export_parquet(url)
        assert [t.table for t in tables][:4] == [
            "patients",
            "studies",
            "series",
            "instances",
        ]
        reader = duckdb.connect()
        for t in tables:
            local = tmp_path / f"{t.table}.parquet"
            with fsspec.open(t.url, "rb") as src:
                local.write_bytes(src.read())
            exported = reader.execute(
                f"SELECT * FROM read_parquet('{local}') ORDER BY ALL"
            ).fetchall()
            source = _rows(archive, f"SELECT count(*) FROM {t.table}")[0][0]
            assert len(exported) == t.rows == source
            first = (
                archive.index.metadata.cursor()
                .execute(f"SELECT * FROM {t.table} ORDER BY ALL")
                .fetchall()
            )
            assert [tuple(map(str, r)) for r in exported] == [
                tuple(map(str, r)) for r in first
            ]

    def test_unknown_url_scheme_is_refused(self, archive) -> None:
        """A URL fsspec has no filesystem for names the URL."""
        with pytest.raises(InvalidInputError, match="cannot write to 'nope://x'"):
            archive.export_parquet("nope://x")
