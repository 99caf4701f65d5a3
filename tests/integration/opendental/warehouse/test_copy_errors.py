"""A value PostgreSQL rejects in a COPY: the load error keeps the first line and where it failed, never the value."""

from __future__ import annotations

import io
from collections.abc import Callable
from types import SimpleNamespace

import psycopg2
import pytest

from blocks.databases import PostgresServer
from clinicflow.connectors.connections import connected
from clinicflow.opendental.warehouse.copy_stream import _copy_error
from clinicflow.opendental.warehouse.load_errors import LoadError


def _rejected(server: PostgresServer, data: str) -> psycopg2.DataError:
    with connected(server) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE t (id int, amount int)")
        with pytest.raises(psycopg2.DataError) as caught:
            cur.copy_expert("COPY t (id, amount) FROM STDIN", io.StringIO(data))
    return caught.value


@pytest.mark.parametrize("value", ["Jane Doe", "x" * 500])
def test_the_rejected_value_is_withheld_and_the_line_and_column_kept(
    make_pg_db: Callable[[str], PostgresServer], value: str
) -> None:
    exc = _rejected(make_pg_db("copyerr"), f"1\t2\n2\t{value}\n")
    error = _copy_error(SimpleNamespace(table="claim"), exc)  # type: ignore[arg-type]
    assert isinstance(error, LoadError)
    assert str(error) == (
        "table 'claim': PostgreSQL rejected a value (ERROR:  invalid input syntax for type integer: "
        "<value withheld>; line 2, column amount)"
    )
    assert value[:8] not in str(error)


def test_other_errors_pass_through() -> None:
    other = RuntimeError("not a data error")
    assert _copy_error(SimpleNamespace(table="claim"), other) is other  # type: ignore[arg-type]


def test_a_null_in_a_not_null_key_names_the_column_and_the_zero_date_never_the_row(
    make_pg_db: Callable[[str], PostgresServer],
) -> None:
    """A zero date in a key loads as NULL; PostgreSQL's DETAIL ("Failing row contains (1, null, zero)") is the row."""
    with connected(make_pg_db("copynull")) as conn, conn.cursor() as cur:
        cur.execute('CREATE TEMPORARY TABLE t ("ProvNum" bigint NOT NULL, "SchedDate" date NOT NULL, "Note" text)')
        with pytest.raises(psycopg2.IntegrityError) as caught:
            cur.copy_expert("COPY t FROM STDIN", io.StringIO("1\t\\N\tPatient Jane Doe called\n"))
    columns = (SimpleNamespace(name="ProvNum", pg_type="bigint"), SimpleNamespace(name="SchedDate", pg_type="date"))
    error = _copy_error(SimpleNamespace(table="schedule", columns=columns), caught.value)  # type: ignore[arg-type]
    assert isinstance(error, LoadError)
    assert str(error) == (
        "table 'schedule': column 'SchedDate' is NOT NULL (a key) but a row's value arrived as NULL (a MySQL zero "
        "date, '0000-00-00', loads as NULL: PostgreSQL has no such date; fix the source rows or leave the column "
        "out of the key); line 1"
    )
    assert "Jane" not in str(error)
