"""Search matching and the read-only SQL interface, over the real corpus."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomvault.archive.config import load_settings
from dicomvault.archive.errors import (
    InvalidInputError,
    LimitExceededError,
    RefusedError,
)
from dicomvault.archive.service import Archive

SERIES = "series_mr_brain_ge_t1_mprage"


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[Archive]:
    data = tmp_path_factory.mktemp("query") / "data"
    settings = load_settings(
        overrides={
            "server.data_dir": str(data),
            "sql.timeout_seconds": 2.0,
            "sql.max_rows": 50,
        },
        environ={},
    )
    archive = Archive.open(settings)
    for path in sorted(corpus.rglob("*.dcm")):
        try:
            archive.store_file(path)
        except Exception:  # noqa: BLE001 - rejections are covered elsewhere
            pass
    yield archive
    archive.close()
    shutil.rmtree(data, ignore_errors=True)


def _values(results: list[dict], tag: str) -> list[object]:
    return [r.get(tag, {}).get("Value", [None])[0] for r in results]


class TestSearch:
    def test_series_of_thirty_slices_lists_thirty_instances(
        self, archive, corpus
    ) -> None:
        """Instance-level search by series UID finds every slice of the series."""
        import pydicom

        first = sorted((corpus / SERIES).glob("*.dcm"))[0]
        series_uid = pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID
        page = archive.search(
            "INSTANCE", {"SeriesInstanceUID": series_uid}, limit=1000, count_total=True
        )
        assert page.total == 30 and len(page.results) == 30
        assert _values(page.results, "00200013") == sorted(
            _values(page.results, "00200013")
        )

    def test_paging_walks_every_match_once(self, archive) -> None:
        """limit/offset pages cover all studies exactly once, with the right total."""
        seen, offset = [], 0
        while True:
            page = archive.search("STUDY", {}, limit=7, offset=offset, count_total=True)
            seen += _values(page.results, "0020000D")
            if not page.next_offset:
                break
            offset = page.next_offset
        assert len(seen) == len(set(seen)) == page.total

    def test_date_range_open_at_either_end(self, archive) -> None:
        """StudyDate ranges A-B, A- and -B match like PS3.4 C.2.2.2.5."""
        cur = archive.index.metadata.cursor()
        expected = {
            "20040101-20041231": (
                "study_date BETWEEN DATE '2004-01-01' AND DATE '2004-12-31'"
            ),
            "20100101-": "study_date >= DATE '2010-01-01'",
            "-19991231": "study_date <= DATE '1999-12-31'",
        }
        for value, where in expected.items():
            want = {
                r[0]
                for r in cur.execute(
                    f"SELECT study_uid FROM studies WHERE {where}"
                ).fetchall()
            }
            got = set(
                _values(
                    archive.search("STUDY", {"StudyDate": value}, limit=1000).results,
                    "0020000D",
                )
            )
            assert got == want and want, value

    def test_wildcards_and_case_insensitive_names(self, archive) -> None:
        """PatientName matches '*' and '?' case-insensitively; PatientID exactly."""
        cur = archive.index.metadata.cursor()
        name, pid = cur.execute(
            "SELECT patient_name, patient_id FROM studies "
            "WHERE patient_name IS NOT NULL AND length(patient_name) > 3 "
            "ORDER BY study_uid LIMIT 1"
        ).fetchone()
        pattern = name[:2].lower() + "*"
        got = archive.search("STUDY", {"PatientName": pattern}, limit=1000).results
        assert got and all(
            str(v).lower().startswith(name[:2].lower())
            for v in (r["00100010"]["Value"][0]["Alphabetic"] for r in got)
        )
        single = "?" + name[1:].upper()
        assert archive.search("STUDY", {"PatientName": single}, limit=1000).results
        by_id = archive.search("STUDY", {"PatientID": pid}, limit=1000).results
        assert by_id and all(r["00100020"]["Value"][0] == pid for r in by_id)

    def test_modality_and_uid_list(self, archive) -> None:
        """ModalitiesInStudy and a backslash list of UIDs narrow the results."""
        mr = archive.search("STUDY", {"ModalitiesInStudy": "MR"}, limit=1000).results
        assert mr and all("MR" in r["00080061"]["Value"] for r in mr)
        uids = _values(mr[:2], "0020000D")
        two = archive.search("STUDY", {"StudyInstanceUID": "\\".join(uids)}).results
        assert sorted(_values(two, "0020000D")) == sorted(uids)

    def test_unknown_attribute_and_bad_date_are_refused(self, archive) -> None:
        """Matching on an unsupported keyword or a malformed date names the problem."""
        with pytest.raises(InvalidInputError, match="cannot match on 'Foo'"):
            archive.search("STUDY", {"Foo": "1"})
        with pytest.raises(
            InvalidInputError, match="StudyDate value '2020-13' is not a date"
        ):
            archive.search("STUDY", {"StudyDate": "2020-13"})


class TestReadOnlySql:
    def test_query_returns_typed_columns(self, archive) -> None:
        """A SELECT streams its rows with column names and types."""
        batches = list(
            archive.sql("SELECT count(*) AS n, min(study_date) AS d FROM studies")
        )
        assert batches[0].columns == ["n", "d"]
        assert batches[0].column_types == ["BIGINT", "DATE"]
        assert batches[0].rows[0][0] > 20

    @pytest.mark.parametrize(
        "statement, kind",
        [
            ("INSERT INTO studies (study_uid) VALUES ('1.2.3')", "INSERT"),
            ("DELETE FROM instances", "DELETE"),
            ("UPDATE studies SET patient_name = 'x'", "UPDATE"),
            ("DROP TABLE instances", "DROP"),
            ("COPY instances TO '/tmp/leak.csv'", "COPY"),
            ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH"),
            ("SET enable_external_access = true", "SET"),
            ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ],
    )
    def test_writes_are_refused_and_change_nothing(
        self, archive, statement, kind
    ) -> None:
        """Any statement but a query is refused with its kind named."""
        before = list(archive.sql("SELECT count(*) FROM instances"))[0].rows
        with pytest.raises(RefusedError, match=f"read-only: {kind}"):
            list(archive.sql(statement))
        assert list(archive.sql("SELECT count(*) FROM instances"))[0].rows == before

    def test_reading_a_file_is_refused(self, archive) -> None:
        """External access is off: read_csv of a local file is clearly refused."""
        with pytest.raises(RefusedError, match="no file or network access"):
            list(archive.sql("SELECT * FROM read_csv('/etc/passwd')"))

    def test_several_statements_are_refused(self, archive) -> None:
        """Two statements in one request are refused."""
        with pytest.raises(RefusedError, match="one statement per request, got 2"):
            list(archive.sql("SELECT 1; SELECT 2"))

    def test_endless_query_is_stopped_at_the_time_limit(self, archive) -> None:
        """A query running past sql.timeout_seconds is interrupted."""
        with pytest.raises(LimitExceededError, match="ran longer than 2 s"):
            list(
                archive.sql("SELECT count(*) FROM range(100000000000) a, range(1000) b")
            )

    def test_result_over_the_row_limit_is_refused(self, archive) -> None:
        """More rows than sql.max_rows ends with a limit error."""
        with pytest.raises(LimitExceededError, match="more than 50 rows"):
            list(archive.sql("SELECT * FROM range(1000)"))

    def test_bad_sql_is_invalid_input(self, archive) -> None:
        """A typo is reported as invalid input with DuckDB's message."""
        with pytest.raises(InvalidInputError, match="SQL does not parse|SQL error"):
            list(archive.sql("SELEC * FROM studies"))
        with pytest.raises(InvalidInputError, match="SQL error"):
            list(archive.sql("SELECT nope FROM studies"))
