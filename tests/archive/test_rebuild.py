"""The index is derived: deleted, it is rebuilt from the tier's objects alone."""

from __future__ import annotations

import shutil
from pathlib import Path

from dicomvault.archive.config import load_settings
from dicomvault.archive.service import Archive

TABLES = ("patients", "studies", "series", "instances")


def _snapshot(archive: Archive) -> dict[str, list[tuple[object, ...]]]:
    cur = archive.index.metadata.cursor()
    out = {}
    for table in TABLES:
        rows = cur.execute(f"SELECT * FROM {table}").fetchall()
        out[table] = sorted(tuple(str(v) for v in row) for row in rows)
    out["catalog"] = sorted(
        (r.sop_instance_uid, r.current, tuple(sorted(r.versions)))
        for r in archive.index.catalog.iter_records()
    )
    return out


class TestIndexRebuild:
    def test_deleted_index_is_rebuilt_identical_from_storage(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """Rebuild after deleting LMDB and DuckDB gives the same rows and retrievals."""
        settings = load_settings(
            overrides={"server.data_dir": str(tmp_path / "data")}, environ={}
        )
        archive = Archive.open(settings)
        files = sorted(corpus.glob("*.dcm"))[:40]
        for path in files:
            try:
                archive.store_file(path)
            except Exception:  # noqa: BLE001 - rejected files are not the point here
                pass
        before = _snapshot(archive)
        archive.close()

        shutil.rmtree(tmp_path / "data" / "index")
        archive = Archive.open(settings)
        try:
            assert len(archive.index.catalog) == 0
            instances, studies, _seconds = archive.rebuild_index()
            assert instances == len(before["instances"])
            assert studies == len(before["studies"])
            assert _snapshot(archive) == before
            for sop, _current, _versions in before["catalog"]:
                _record, stream = archive.retrieve(sop)
                assert b"".join(stream)
        finally:
            archive.close()

    def test_rebuild_on_a_live_index_changes_nothing(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """Rebuilding an intact index leaves every table as it was."""
        settings = load_settings(
            overrides={"server.data_dir": str(tmp_path / "data")}, environ={}
        )
        archive = Archive.open(settings)
        try:
            for path in sorted((corpus / "series_mr_brain_ge_t1_mprage").glob("*.dcm"))[
                :10
            ]:
                archive.store_file(path)
            before = _snapshot(archive)
            archive.rebuild_index()
            assert _snapshot(archive) == before
        finally:
            archive.close()
