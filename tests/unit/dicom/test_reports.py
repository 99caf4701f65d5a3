"""The reports source on a real PostgreSQL: keyset pages of whole files, grouping, query validation."""

from __future__ import annotations

import pytest

from clinicflow.dicom.reports import ReportsQueryError, batches


def test_batches_split_a_page_without_losing_files() -> None:
    items = list(range(7))
    assert list(batches(items, 3)) == [[0, 1, 2], [3, 4, 5], [6]]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        list(batches(items, 0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "SELECT ';' AS x",
        'SELECT "a;b" FROM t',
        "SELECT 1 -- ; DROP TABLE t\n",
        "SELECT /* ; /* nested ; */ */ 1",
        "SELECT $$;$$",
        "SELECT $tag$ ; $tag$",
        "SELECT 'it''s;'",
        r"SELECT E'it\'s;'",
        "SELECT (1)",
    ],
)
def test_one_statement_passes(sql: str) -> None:
    from clinicflow.dicom.reports import check_single_statement

    check_single_statement(sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1; DROP TABLE reports", "single statement"),
        ("SELECT 1) AS r; DROP TABLE reports; SELECT * FROM (SELECT 1", "unbalanced"),
        ("SELECT 1) AS r, (SELECT 1", "unbalanced"),
        ("SELECT 'x", "unterminated quoted"),
        ("SELECT 'x''", "unterminated quoted"),
        ("SELECT /* x", "unterminated /*"),
        ("SELECT $a$ x", "unterminated dollar"),
        # E'' strings escape quotes with a backslash: what looks like one string to a '' scanner is three statements.
        (r"SELECT E'\'' ; COMMIT; DROP TABLE reports; SELECT ''", "single statement"),
        (r"SELECT E'\\'; DROP TABLE reports", "single statement"),
    ],
)
def test_more_than_one_statement_is_refused(sql: str, message: str) -> None:
    from clinicflow.dicom.reports import check_single_statement

    with pytest.raises(ReportsQueryError, match=message):
        check_single_statement(sql)
