"""The reports source on a real PostgreSQL: keyset pages of whole files, grouping, query validation."""

from __future__ import annotations

import random

import pytest

from clinicflow.dicom.reports import FIELD_SEPARATOR, FileKey, ReportsQueryError, ReportsSource
from tests.integration.dicom.conftest import create_reports_table


def _rows(files: int, seed: int = 7) -> list[tuple[str, ...]]:
    """Reports rows for ``files`` files, 1-4 rows each, shuffled (physical order ≠ key order)."""
    rng = random.Random(seed)
    rows = []
    for i in range(files):
        key = (f"st{i % 5}", f"se{i % 3}", f"in{i:03d}", f"loc/{i:03d}.dcm")
        for r in range(rng.randint(1, 4)):
            rows.append((*key, f"report {r % 2} of file {i}", f"reader{r}"))
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize("page_size", [1, 3, 7, 100])
def test_pages_cover_every_file_once_and_never_split_one(reports_db, page_size: int) -> None:
    rows = _rows(40)
    create_reports_table(reports_db, rows, fields=("report_text", "reader"))
    source = ReportsSource(reports_db, "reports")
    seen: list[FileKey] = []
    rows_seen = 0
    for page in source.pages(page_size):
        assert 1 <= len(page.files) <= page_size
        seen.extend(g.key for g in page.files)
        rows_seen += page.rows
        # Every row of each file is in this page: report_rows equals the table's count for that key.
        for group in page.files:
            assert group.report_rows == sum(1 for r in rows if r[:4] == group.key.as_tuple())
    assert seen == sorted(set(seen))  # stable key order, no repeats
    assert len(seen) == 40
    assert rows_seen == len(rows)
    count = source.count()
    assert (count.rows, count.files, count.rows_without_key) == (len(rows), 40, 0)


def test_a_files_reports_are_sorted_and_each_field_lists_them_in_the_same_order(reports_db) -> None:
    rows = [
        ("s", "se", "i1", "a.dcm", "second report", "x"),
        ("s", "se", "i1", "a.dcm", "first report", "y"),
        ("s", "se", "i1", "a.dcm", "second report", "x"),  # the same report twice: once
        ("s", "se", "i1", "b.dcm", "other file, same instance id", ""),
        ("s", "se", "i2", "c.dcm", "PRELIM", "Dr. Smith"),
        ("s", "se", "i2", "c.dcm", "FINAL", "Dr. Muller"),
        ("s", "se", "i2", "c.dcm", "ADDENDUM", None),
    ]
    create_reports_table(reports_db, rows, fields=("report_text", "reader"))
    page = ReportsSource(reports_db, "reports").read_page(None, 10)
    assert [g.key.file_location for g in page.files] == ["a.dcm", "b.dcm", "c.dcm"]  # same SOP instance, two files
    first = page.files[0]
    assert first.fields == {
        "report_text": f"first report{FIELD_SEPARATOR}second report",
        "reader": f"y{FIELD_SEPARATOR}x",  # in the reports' order (each field sorted alone: "x" first, wrongly)
    }
    assert first.report_rows == 3
    # Position by position the fields describe one report; an empty value keeps its place.
    assert page.files[2].fields == {
        "report_text": FIELD_SEPARATOR.join(["ADDENDUM", "FINAL", "PRELIM"]),
        "reader": FIELD_SEPARATOR.join(["", "Dr. Muller", "Dr. Smith"]),
    }
    assert page.files[1].fields == {"report_text": "other file, same instance id", "reader": ""}


def test_sql_text_and_typed_keys(reports_db) -> None:
    conn = reports_db.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE studies (sid int, loc text, note text, taken date)")
        cur.executemany(
            "INSERT INTO studies VALUES (%s, %s, %s, %s)",
            [(10, "x.dcm", "n10", "2024-01-02"), (9, "y.dcm", "n9", None), (100, "z.dcm", "n100", None)],
        )
    conn.commit()
    conn.close()
    query = (
        "SELECT sid AS study_id, 1 AS series_id, sid * 10 AS instance_id, loc AS file_location, "
        "note, taken FROM studies"
    )
    source = ReportsSource(reports_db, query)
    # A "%" in the query's own text (LIKE) is text, not a parameter (it failed: "list index out of range").
    liked = ReportsSource(reports_db, query + " WHERE note LIKE 'n1%'")
    assert [g.key.file_location for p in liked.pages(10) for g in p.files] == ["x.dcm", "z.dcm"]
    assert liked.count().files == 2
    keys = [g.key for p in source.pages(1) for g in p.files]
    # Integer keys keep integer order across pages (9 < 10 < 100), rendered as text.
    assert [k.study_id for k in keys] == ["9", "10", "100"]
    assert source.report_fields() == ["note", "taken"]
    first_page = source.read_page(None, 3)
    assert first_page.files[1].fields == {"note": "n10", "taken": "2024-01-02"}


def test_rows_without_a_key_are_counted_and_skipped(reports_db) -> None:
    rows = [
        ("s", "se", "i", "a.dcm", "ok"),
        ("s", None, "i", "b.dcm", "no series"),
        ("s", "se", "i", None, "no file"),
        ("s", "se", " ", "c.dcm", "a blank instance id is none either"),
    ]
    create_reports_table(reports_db, rows)
    source = ReportsSource(reports_db, "reports")
    count = source.count()
    assert (count.rows, count.files, count.rows_without_key) == (4, 1, 3)
    assert [g.key.file_location for p in source.pages(10) for g in p.files] == ["a.dcm"]


def test_query_errors_name_the_problem(reports_db) -> None:
    create_reports_table(reports_db, [("s", "se", "i", "a.dcm", "t")])
    with pytest.raises(ReportsQueryError, match=r"lacks key column.*file_location"):
        ReportsSource(reports_db, "SELECT study_id, series_id, instance_id FROM reports").columns()
    with pytest.raises(ReportsQueryError, match="jpg_count clash with output column"):
        ReportsSource(reports_db, "SELECT *, 1 AS jpg_count FROM reports").columns()
    with pytest.raises(ReportsQueryError, match=r"failed.*no_such_view"):
        ReportsSource(reports_db, "no_such_view").columns()
    with pytest.raises(ReportsQueryError, match="SELECT/WITH"):
        ReportsSource(reports_db, "DROP TABLE reports").relation()
    with pytest.raises(ReportsQueryError, match="empty"):
        ReportsSource(reports_db, "  ").relation()
    assert ReportsSource(reports_db, "public.reports").relation() == '"public"."reports"'


def test_the_query_runs_read_only_and_alone(reports_db) -> None:
    create_reports_table(reports_db, [("s", "se", "i", "a.dcm", "t")])
    conn = reports_db.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE SEQUENCE report_counter")
    conn.commit()
    conn.close()
    writing = ReportsSource(reports_db, "SELECT *, nextval('report_counter') AS n FROM reports")
    with pytest.raises(ReportsQueryError, match="read-only transaction"):
        writing.count()
    breaking_out = ReportsSource(
        reports_db, "SELECT * FROM reports) AS r; DELETE FROM reports; SELECT * FROM (SELECT * FROM reports"
    )
    with pytest.raises(ReportsQueryError, match="unbalanced"):
        breaking_out.count()
    assert ReportsSource(reports_db, "reports").count().rows == 1  # nothing was deleted
