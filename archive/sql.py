"""Read-only SQL over the metadata index, for analysts.

One statement per request, and only a query (SELECT, WITH ... SELECT,
VALUES, EXPLAIN is refused). The database runs with external access off, so
a query cannot read or write files or reach the network. A timer interrupts
a query that runs past ``sql.timeout_seconds``; a result larger than
``sql.max_rows`` is cut off with an error.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from dicomvault.archive.errors import (
    InvalidInputError,
    LimitExceededError,
    RefusedError,
)
from dicomvault.archive.index.metadata import MetadataIndex


@dataclass(frozen=True, slots=True)
class SqlBatch:
    """A batch of result rows; columns and types come with the first one."""

    columns: list[str]
    column_types: list[str]
    rows: list[list[Any]]
    # The batch as an Arrow IPC stream, when asked for (rows is then empty).
    arrow_ipc: bytes = b""


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def rows_to_json(rows: list[list[Any]]) -> str:
    """Rows as a JSON array of arrays (dates as ISO strings)."""
    return json.dumps([[_plain(v) for v in row] for row in rows])


def check_read_only(cur: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but exactly one query statement.

    Raises
    ------
    InvalidInputError
        Empty SQL or SQL that does not parse.
    RefusedError
        More than one statement, or a statement that is not a query.
    """
    if not sql.strip():
        raise InvalidInputError("empty SQL statement")
    try:
        statements = cur.extract_statements(sql)
    except duckdb.Error as err:
        raise InvalidInputError(f"SQL does not parse: {err}") from None
    if len(statements) != 1:
        raise RefusedError(
            f"one statement per request, got {len(statements)}; send them one at a time"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise RefusedError(
            f"the SQL interface is read-only: {kind.name} statements are refused; "
            "only queries (SELECT, WITH, VALUES) may run"
        )


def _check_rows(sent: int, max_rows: int) -> None:
    if sent > max_rows:
        raise LimitExceededError(
            f"the query returned more than {max_rows} rows (sql.max_rows); "
            "add a LIMIT, filter or aggregate"
        )


def _arrow_batches(
    cur: duckdb.DuckDBPyConnection,
    columns: list[str],
    types: list[str],
    batch_rows: int,
    max_rows: int,
) -> Iterator[SqlBatch]:
    import pyarrow as pa

    with warnings.catch_warnings():
        # DuckDB warns that a cursor result is copied once for Arrow; the
        # copy is one batch at a time, which is what we stream anyway.
        warnings.simplefilter("ignore", UserWarning)
        reader = cur.to_arrow_reader(batch_rows)
    if reader is None:  # no result set: check_read_only lets only queries in
        return
    sent = 0
    first = True
    for record_batch in reader:
        sent += record_batch.num_rows
        _check_rows(sent, max_rows)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, record_batch.schema) as writer:
            writer.write_batch(record_batch)
        yield SqlBatch(
            columns if first else [],
            types if first else [],
            [],
            sink.getvalue().to_pybytes(),
        )
        first = False
    if first:  # no rows: still send the columns and an empty stream
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, reader.schema):
            pass
        yield SqlBatch(columns, types, [], sink.getvalue().to_pybytes())


def run_query(
    index: MetadataIndex,
    sql: str,
    *,
    batch_rows: int,
    max_rows: int,
    timeout_seconds: float,
    arrow: bool = False,
) -> Iterator[SqlBatch]:
    """Run one read-only query and yield its rows in batches.

    With ``arrow``, each batch carries an Arrow IPC stream (schema plus one
    record batch, with DuckDB's own types) instead of Python rows.

    Raises
    ------
    RefusedError
        Not a single query, or it tried to reach files or the network.
    LimitExceededError
        Ran past the time limit or returned more than ``max_rows`` rows.
    InvalidInputError
        SQL that does not parse or bind (unknown table or column, ...).
    """
    cur = index.cursor()
    check_read_only(cur, sql)
    timed_out = threading.Event()

    def interrupt() -> None:
        timed_out.set()
        cur.interrupt()

    timer = threading.Timer(timeout_seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        try:
            cur.execute(sql)
            columns = [d[0] for d in cur.description or []]
            types = [str(d[1]) for d in cur.description or []]
            if arrow:
                yield from _arrow_batches(cur, columns, types, batch_rows, max_rows)
                return
            sent = 0
            first = True
            while True:
                rows = cur.fetchmany(batch_rows)
                if not rows and not first:
                    return
                sent += len(rows)
                _check_rows(sent, max_rows)
                yield SqlBatch(
                    columns if first else [],
                    types if first else [],
                    [list(r) for r in rows],
                )
                first = False
                if not rows:
                    return
        except duckdb.InterruptException:
            raise LimitExceededError(
                f"the query ran longer than {timeout_seconds:g} s "
                "(sql.timeout_seconds) and was stopped"
            ) from None
        except duckdb.PermissionException as err:
            raise RefusedError(
                f"the SQL interface has no file or network access: {err}"
            ) from None
        except (
            duckdb.ParserException,
            duckdb.BinderException,
            duckdb.CatalogException,
        ) as err:
            raise InvalidInputError(f"SQL error: {err}") from None
        except duckdb.Error as err:
            if timed_out.is_set():
                raise LimitExceededError(
                    f"the query ran longer than {timeout_seconds:g} s "
                    "(sql.timeout_seconds) and was stopped"
                ) from None
            raise InvalidInputError(f"SQL error: {type(err).__name__}: {err}") from None
    finally:
        timer.cancel()
