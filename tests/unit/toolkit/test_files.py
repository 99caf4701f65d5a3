"""File extractor/loader: CSV, JSON Lines and Parquet round trips, encodings, compression by suffix."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from clinicflow.toolkit.base import Batch, RunContext, ToolkitError
from clinicflow.toolkit.files import FileExtractor, FileLoader

CTX = RunContext()
ROWS = [(i, f"Zoë {i}", None if i % 3 == 0 else f"{i}.5") for i in range(25)]


def stream() -> list[Batch]:
    return [Batch(("id", "name", "amount"), ROWS[i : i + 10]) for i in range(0, len(ROWS), 10)]


@pytest.mark.parametrize(
    "name",
    ["out.csv", "out.csv.gz", "out.csv.bz2", "out.csv.zst", "out.jsonl", "out.jsonl.xz", "out.jsonl.gz", "out.parquet"],
)
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert FileLoader(str(path)).load(stream(), CTX) == 25
    batches = list(FileExtractor(str(path), batch_size=7).extract(CTX))
    assert [len(b) for b in batches] == [7, 7, 7, 4]
    rows = [r for b in batches for r in b.rows]
    if name.startswith("out.csv"):  # CSV holds text: the ids come back as strings
        rows = [(int(r[0]), r[1], r[2]) for r in rows]
    assert rows == ROWS
    assert [p.name for p in tmp_path.iterdir()] == [name]
    if name.endswith((".gz", ".bz2", ".zst", ".xz")):
        assert "Zoë" not in path.read_bytes().decode("latin-1")


def test_encoding_and_glob(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes("id;name\n1;Zoë\n".encode("latin-1"))
    (tmp_path / "b.csv").write_bytes("id;name\n2;José\n".encode("latin-1"))
    extractor = FileExtractor(str(tmp_path / "*.csv"), encoding="latin-1", delimiter=";")
    assert [r for b in extractor.extract(CTX) for r in b.rows] == [("1", "Zoë"), ("2", "José")]
    with pytest.raises(ToolkitError, match="not valid utf-8"):
        list(FileExtractor(str(tmp_path / "a.csv"), delimiter=";").extract(CTX))


def test_bad_input_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(ToolkitError, match=r"x.csv: line 3 has 1 fields"):
        list(FileExtractor(str(tmp_path / "x.csv")).extract(CTX))
    (tmp_path / "x.jsonl").write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ToolkitError, match=r"x.jsonl: line 2 is not JSON"):
        list(FileExtractor(str(tmp_path / "x.jsonl")).extract(CTX))
    with pytest.raises(ToolkitError, match="no file matches"):
        list(FileExtractor(str(tmp_path / "none*.csv")).extract(CTX))
    with pytest.raises(ToolkitError, match="cannot tell the file format"):
        FileLoader(str(tmp_path / "x.txt"))


def test_jsonl_writes_dates_as_iso(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    FileLoader(str(path)).load([Batch(("d",), [(date(2026, 1, 2),)])], CTX)
    assert path.read_text() == '{"d": "2026-01-02"}\n'


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "csv.gz"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path, suffix: str) -> None:
    import gzip

    text = "visit_id,fee\r\n1001,125.50\r\n" if suffix.startswith("csv") else '{"visit_id": 1001, "fee": 125.5}\n'
    data = "\ufeff".encode() + text.encode()  # as Excel's "CSV UTF-8" writes it
    path = tmp_path / f"visits.{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    (batch,) = FileExtractor(str(path)).extract(CTX)
    assert batch.columns == ("visit_id", "fee")
    with pytest.raises(ToolkitError, match="unknown text encoding 'utf-9'"):
        list(FileExtractor(str(path), encoding="utf-9").extract(CTX))


def test_an_excel_sheet_is_read_with_its_cells_types_and_a_bad_one_is_named(tmp_path: Path) -> None:
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "Notes"
    fees = book.create_sheet("Fees 2025")
    fees.append(["Code", "Description", "Fee", "Effective"])
    fees.append(["D0120", "Periodic oral evaluation", 52.5, datetime(2025, 1, 1)])
    fees.append([])
    fees.append(["D1110", "Prophylaxis - adult", 98, datetime(2025, 1, 1)])
    path = tmp_path / "fee_schedule.xlsx"
    book.save(path)
    extractor = FileExtractor(str(path), sheet="Fees 2025", batch_size=1)
    batches = list(extractor.extract(RunContext()))
    assert [b.columns for b in batches] == [("Code", "Description", "Fee", "Effective")] * 2
    assert [r for b in batches for r in b.rows] == [
        ("D0120", "Periodic oral evaluation", 52.5, datetime(2025, 1, 1)),
        ("D1110", "Prophylaxis - adult", 98, datetime(2025, 1, 1)),
    ]
    with pytest.raises(ToolkitError, match=r"fee_schedule.xlsx: no sheet 'Fees' \(sheets: Notes, Fees 2025\)"):
        list(FileExtractor(str(path), sheet="Fees").extract(RunContext()))
    fees["F4"] = "stray"
    book.save(path)
    with pytest.raises(ToolkitError, match=r"sheet 'Fees 2025': cell F4 has a value but no header"):
        list(FileExtractor(str(path), sheet="Fees 2025").extract(RunContext()))
    with pytest.raises(ToolkitError, match="xlsx is read only"):
        FileLoader(str(tmp_path / "out.xlsx"))


def test_title_rows_above_a_sheets_table_are_left_out_and_a_one_column_sheet_keeps_its_header(tmp_path: Path) -> None:
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Practice fee schedule, effective 2025"])
    sheet.append(["Northside Dental"])
    sheet.append([])
    sheet.append(["Code", "Fee", "Effective"])
    sheet.append(["D0120", 52.5, datetime(2025, 1, 1)])
    path = tmp_path / "fees.xlsx"
    book.save(path)
    (batch,) = FileExtractor(str(path)).extract(RunContext())
    assert (batch.columns, batch.rows) == (("Code", "Fee", "Effective"), [("D0120", 52.5, datetime(2025, 1, 1))])
    single = Workbook()
    for value in ["HR", *range(60, 75)]:
        single.active.append([value])
    path = tmp_path / "hr.xlsx"
    single.save(path)
    batches = list(FileExtractor(str(path), batch_size=100).extract(RunContext()))
    assert [b.columns for b in batches] == [("HR",)]
    assert [r[0] for r in batches[0].rows] == list(range(60, 75))  # every row, the ones read ahead too


@pytest.mark.parametrize("name", ["drift.csv", "drift.parquet"])
def test_columns_that_move_or_appear_in_a_later_batch(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    # Reordered, or a column missing from a batch: written under the first batch's header.
    moved = [Batch(("id", "name"), [(1, "a")]), Batch(("name", "id"), [("b", 2)]), Batch(("id",), [(3,)])]
    assert FileLoader(str(path)).load(moved, CTX) == 3
    rows = [r for b in FileExtractor(str(path)).extract(CTX) for r in b.rows]
    assert [(str(r[0]), r[1]) for r in rows] == [
        ("1", "a"),
        ("2", "b"),
        ("3", None),
    ]
    # A column first seen in batch 2: the CSV's header had two names over rows of three (a corrupt file), the
    # Parquet writer an IndexError. Now an error naming it, and the previous file stays whole.
    new = [Batch(("id", "name"), [(4, "d")]), Batch(("id", "name", "email"), [(5, "e", "e@x")])]
    with pytest.raises(ToolkitError, match=r"column\(s\) 'email' first appear in batch 2"):
        FileLoader(str(path)).load(new, CTX)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert len([r for b in FileExtractor(str(path)).extract(CTX) for r in b.rows]) == 3


def test_a_parquet_columns_type_change_names_the_column_and_batch(tmp_path: Path) -> None:
    changed = [Batch(("id", "result"), [(1, 5)]), Batch(("id", "result"), [(2, "positive")])]
    with pytest.raises(ToolkitError, match=r"column 'result' \(typed int64 by the first batch\): batch 2") as caught:
        FileLoader(str(tmp_path / "labs.parquet")).load(changed, CTX)
    assert "positive" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
