"""Transformers: strict vs lenient type conversion, lambda, columns."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from clinicflow.toolkit.base import Batch, MemoryDeadLetters, RunContext, ToolkitError, rebatch
from clinicflow.toolkit.transform import ColumnTransformer, LambdaTransformer, TypeConversionError, TypeConverter

CTX = RunContext()


def batch() -> Batch:
    return Batch(
        ("id", "amount", "day", "ok"),
        [("1", "2.50", "2026-01-02", "yes"), ("2", "x", "2026-01-03", "no"), ("3", None, "bad-date", "1")],
    )


def test_strict_conversion_names_row_index_and_column() -> None:
    converter = TypeConverter({"id": "int", "amount": "decimal", "day": "date", "ok": "bool"})
    first = converter.transform(Batch(batch().columns, batch().rows[:1]), CTX)
    assert first.rows == [(1, Decimal("2.50"), date(2026, 1, 2), True)]
    with pytest.raises(TypeConversionError) as err:
        converter.transform(Batch(batch().columns, batch().rows[1:]), CTX)
    # the index counts over the whole stream, not the batch
    assert err.value.row_index == 1
    assert err.value.column == "amount"
    assert "row 1, column 'amount'" in str(err.value)


def test_lenient_conversion_dead_letters_the_row_and_goes_on() -> None:
    letters = MemoryDeadLetters()
    converter = TypeConverter({"id": "int", "amount": "decimal", "day": "date"}, strict=False, dead_letters=letters)
    out = converter.transform(batch(), CTX)
    assert out.rows == [(1, Decimal("2.50"), date(2026, 1, 2), "yes")]
    assert [(d.row_index, d.column) for d in letters.letters] == [(1, "amount"), (2, "day")]
    assert letters.letters[0].row["id"] == "2"
    assert converter.rejected == 2


def test_unknown_type_and_missing_column_are_config_errors() -> None:
    with pytest.raises(ToolkitError, match="unknown type 'integer'"):
        TypeConverter({"id": "integer"})
    with pytest.raises(ToolkitError, match="date:FORMAT"):
        TypeConverter({"day": "date:dd.mm.yyyy"})  # a format needs strptime's % directives
    with pytest.raises(ToolkitError, match=r"\['nope'\]"):
        TypeConverter({"nope": "int"}).transform(batch(), CTX)


def test_dates_in_a_files_own_format_and_an_iso_date_times_date() -> None:
    from datetime import datetime

    converter = TypeConverter({"day": "date:%d.%m.%Y", "at": "datetime:%m/%d/%Y %H:%M", "iso": "date"})
    out = converter.transform(
        Batch(("day", "at", "iso"), [("05.03.2024", "03/05/2024 14:30", "2024-03-04T10:30:00")]), CTX
    )
    assert out.rows == [(date(2024, 3, 5), datetime(2024, 3, 5, 14, 30), date(2024, 3, 4))]
    with pytest.raises(TypeConversionError, match="column 'day'"):
        converter.transform(Batch(("day", "at", "iso"), [("2024-03-05", None, None)]), CTX)


def test_lambda_per_row_drops_none_and_per_batch_must_return_a_batch() -> None:
    keep_even = LambdaTransformer(lambda r: {**r, "id": int(r["id"]) * 10} if r["id"] != "2" else None)
    out = keep_even.transform(batch(), CTX)
    assert [r[0] for r in out.rows] == [10, 30]
    with pytest.raises(ToolkitError, match="expected Batch"):
        LambdaTransformer(lambda b: len(b), per="batch").transform(batch(), CTX)


def test_columns_rename_derive_select() -> None:
    columns = ColumnTransformer(
        rename={"ok": "flag"}, derive={"label": lambda r: f"{r['id']}-{r['flag']}"}, select=["label", "id"]
    )
    out = columns.transform(batch(), CTX)
    assert out.columns == ("label", "id")
    assert out.rows[0] == ("1-yes", "1")
    with pytest.raises(ToolkitError, match="missing columns"):
        ColumnTransformer(select=["nope"]).transform(batch(), CTX)


def test_rebatch_regroups_without_losing_rows() -> None:
    stream = [Batch(("a",), [(i,) for i in range(start, start + 7)]) for start in range(0, 21, 7)]
    sizes = [len(b) for b in rebatch(stream, 5)]
    assert sizes == [5, 5, 5, 5, 1]


def test_an_error_in_a_pipelines_own_function_names_the_function_and_its_line() -> None:
    def explode(batch: Batch) -> Batch:
        return Batch(("id",), [(r.get("id"),) for r in batch.rows])  # rows are tuples: AttributeError

    with pytest.raises(
        ToolkitError,
        match=r"lambda transformer 'explode' \(per batch\) \(.*test_transform.py, line \d+\)"
        r" raised AttributeError",
    ) as caught:
        LambdaTransformer(explode, per="batch").transform(Batch(("id",), [(1,)]), CTX)
    assert "'tuple' object has no attribute 'get'" in str(caught.value)
