"""Processors against independently computed values (pandas / scipy on the whole array), no database."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import find_peaks

from clinicflow.processing.base import DataSource, InvalidRequest, ProcessingError
from clinicflow.processing.datafiles import DataFileError, describe_file
from clinicflow.processing.processors import (
    PeakDetectionParams,
    RollingMeanParams,
    StreamingRollingMean,
    run_processor,
    validate_request,
)


def source_for(path: Path, chunk_rows: int = 10_000) -> DataSource:
    meta = describe_file(path, path.name, chunk_rows=chunk_rows)
    return DataSource(
        path=path,
        name=path.name,
        format=meta.format,
        row_count=meta.row_count,
        columns=[c["name"] for c in meta.columns],
    )


def signal_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    values = np.sin(t / 15.0) * 3 + rng.normal(0, 0.4, rows)
    values[rng.choice(rows, rows // 50, replace=False)] = np.nan
    return pd.DataFrame({"t": t, "voltage": values, "other": rng.normal(10, 2, rows)})


@pytest.mark.parametrize(
    ("window", "min_periods", "center"),
    [(1, None, False), (5, None, False), (7, 3, True), (8, 2, True), (50, 1, False), (4, None, True)],
)
def test_streaming_rolling_mean_equals_pandas_on_the_whole_series(
    window: int, min_periods: int | None, center: bool
) -> None:
    series = signal_frame(1000)["voltage"]
    expected = series.rolling(window, min_periods=min_periods, center=center).mean().to_numpy()
    state = StreamingRollingMean(window, min_periods, center)
    chunks = [series.to_numpy()[i : i + 37] for i in range(0, 1000, 37)]
    got = np.concatenate([state.feed(c) for c in chunks] + [state.finish()])
    np.testing.assert_allclose(got, expected, equal_nan=True, rtol=1e-12, atol=1e-12)


def test_rolling_mean_processor_on_a_csv_in_chunks(tmp_path: Path) -> None:
    frame = signal_frame(3000)
    path = tmp_path / "vitals.csv"
    frame.to_csv(path, index=False)
    params = validate_request(
        "rolling_mean",
        {
            "window": 9,
            "min_periods": 4,
            "center": True,
            "columns": ["voltage", "other"],
            "chunk_rows": 250,
            "max_points": 5000,
        },
    )
    seen: list[float] = []
    result = run_processor("rolling_mean", source_for(path), params, seen.append)
    json.dumps(result, allow_nan=False)
    assert result["rows"] == 3000
    assert result["step"] == 1
    assert result["index"] == list(range(3000))
    for column in ("voltage", "other"):
        expected = pd.read_csv(path)[column].rolling(9, min_periods=4, center=True).mean().to_numpy()
        got = np.array([np.nan if v is None else v for v in result["series"][column]["rolling_mean"]])
        np.testing.assert_allclose(got, expected, equal_nan=True, rtol=1e-9)
    assert seen[-1] == 1.0
    assert len(seen) == 12


def test_rolling_mean_samples_the_series_for_the_chart(tmp_path: Path) -> None:
    frame = signal_frame(1000)
    path = tmp_path / "big.parquet"
    frame.to_parquet(path)
    params = RollingMeanParams(window=3, columns=["other"], chunk_rows=99, max_points=100)
    result = run_processor("rolling_mean", source_for(path), params, lambda _p: None)
    expected = frame["other"].rolling(3).mean().to_numpy()[::10]
    assert result["step"] == 10
    assert result["index"] == list(range(0, 1000, 10))
    np.testing.assert_allclose(
        np.array(result["series"]["other"]["rolling_mean"], dtype=float), expected, equal_nan=True
    )
    np.testing.assert_allclose(result["series"]["other"]["values"], frame["other"].to_numpy()[::10])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"height": 2.0},
        {"height": 1.0, "distance": 20},
        {"prominence": 1.5, "wlen": 101},
        {"width": 3, "prominence": 0.5, "wlen": 61},
        {},
    ],
)
def test_chunked_peaks_equal_one_find_peaks_call(kwargs: dict) -> None:
    values = np.nan_to_num(signal_frame(20_000)["voltage"].to_numpy())
    expected, _ = find_peaks(values, **kwargs)
    from clinicflow.processing.peaks import find_peaks_stream
    from clinicflow.processing.processors import _peak_options

    params = PeakDetectionParams(chunk_rows=1_500, overlap_rows=400, **kwargs)
    got, _ = find_peaks_stream(lambda: (values[i : i + 777] for i in range(0, len(values), 777)), _peak_options(params))
    np.testing.assert_array_equal(got, expected)


def test_peak_detection_processor_lists_peaks_with_values(tmp_path: Path) -> None:
    frame = signal_frame(5000)
    frame["voltage"] = frame["voltage"].fillna(0.0)
    path = tmp_path / "signal.csv"
    frame.to_csv(path, index=False)
    params = validate_request(
        "peak_detection", {"column": "voltage", "prominence": 1.0, "distance": 10, "chunk_rows": 700, "max_peaks": 5}
    )
    result = run_processor("peak_detection", source_for(path), params, lambda _p: None)
    values = pd.read_csv(path)["voltage"].to_numpy()
    expected, props = find_peaks(values, prominence=1.0, distance=10)
    assert result["count"] == len(expected)
    assert result["truncated"] is (len(expected) > 5)
    assert [p["index"] for p in result["peaks"]] == expected[:5].tolist()
    assert [p["value"] for p in result["peaks"]] == pytest.approx(values[expected[:5]].tolist())
    assert [p["prominence"] for p in result["peaks"]] == pytest.approx(props["prominences"][:5].tolist())


def test_data_quality_reports_nulls_duplicates_ranges_and_schema_failures(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 3, 5, 6],
            "hr": [60.0, None, 250.0, 250.0, 70.0, 65.0],
            "unit": ["bpm", "bpm", "bpm", "bpm", "x", None],
        }
    )
    path = tmp_path / "q.csv"
    frame.to_csv(path, index=False)
    params = validate_request(
        "data_quality",
        {
            "chunk_rows": 4,
            "expect": {
                "hr": {"type": "float", "min": 30, "max": 220, "nullable": False},
                "unit": {"type": "str", "nullable": True},
                "missing": {"type": "int"},
            },
        },
    )
    result = run_processor("data_quality", source_for(path), params, lambda _p: None)
    assert result["rows"] == 6
    assert result["duplicate_rows"] == 1
    assert result["columns"]["hr"] == {
        "dtype": "float64",
        "nulls": 1,
        "null_fraction": pytest.approx(1 / 6),
        "min": 60.0,
        "max": 250.0,
    }
    assert result["columns"]["unit"]["nulls"] == 1
    assert result["schema"]["checked"]
    assert not result["schema"]["passed"]
    failures = {(f["column"], f["check"]): f for f in result["schema"]["failures"]}
    assert failures[("hr", "less_than_or_equal_to(220.0)")]["rows"] == [2, 3]
    assert failures[("hr", "not_nullable")]["rows"] == [1]
    assert failures[("missing", "column_in_dataframe")]["count"] == 2  # once per chunk
    json.dumps(result, allow_nan=False)


def test_requests_are_validated_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as error:
        validate_request("fourier", {})
    assert error.value.field == "processing_type"
    with pytest.raises(InvalidRequest) as error:
        validate_request("rolling_mean", {"window": 0})
    assert error.value.field == "parameters.window"
    with pytest.raises(InvalidRequest) as error:
        validate_request("rolling_mean", {"window": 3, "windwo": 4})
    assert error.value.field == "parameters.windwo"
    with pytest.raises(InvalidRequest) as error:
        validate_request("peak_detection", {"column": "nope"}, file_columns=["a"])
    assert error.value.field == "parameters.column"
    with pytest.raises(InvalidRequest) as error:
        validate_request("rolling_mean", {"window": 3, "min_periods": 4})
    assert error.value.field == "parameters"


def test_non_numeric_column_and_unreadable_file_fail_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "text.csv"
    path.write_text("a,b\n1,x\n2,y\n", encoding="utf-8")
    with pytest.raises(ProcessingError, match="column 'b' is not numeric"):
        run_processor("rolling_mean", source_for(path), RollingMeanParams(window=2, columns=["b"]), lambda _p: None)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataFileError, match=r"bad\.parquet"):
        describe_file(bad, bad.name)


def test_column_chunks_of_parquet_equal_pandas_floats_and_leave_other_types_to_pandas(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 2_500
    rng = np.random.default_rng(5)
    nulls = rng.random(rows) < 0.1
    table = pa.table(
        {
            "i64": pa.array(np.arange(rows), mask=nulls),
            "i8": pa.array((np.arange(rows) % 100).astype(np.int8)),
            "u64": pa.array(np.arange(rows, dtype=np.uint64) * 3),
            "f32": pa.array(rng.normal(size=rows).astype(np.float32), mask=nulls),
            "f64": pa.array(np.where(rng.random(rows) < 0.05, np.nan, rng.normal(size=rows)), mask=nulls),
            "flag": pa.array(rng.random(rows) < 0.5),
            "text": pa.array([str(i) for i in range(rows)]),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path, row_group_size=1_000)
    source = source_for(path)
    frame = pd.read_parquet(path)
    for column in ("i64", "i8", "u64", "f32", "f64"):
        chunks = list(source.column_chunks(column, 700))
        assert [len(c) for c in chunks] == [700, 700, 700, 400]
        assert all(isinstance(c, np.ndarray) and c.dtype == np.float64 for c in chunks)
        expected = frame[column].to_numpy(dtype=float, na_value=np.nan)
        np.testing.assert_array_equal(np.concatenate(chunks), expected, err_msg=column)
    for column in ("flag", "text"):
        chunks = list(source.column_chunks(column, 700))
        assert all(isinstance(c, pd.Series) for c in chunks)
        pd.testing.assert_series_equal(pd.concat(chunks, ignore_index=True), frame[column], check_names=False)
    with pytest.raises(ProcessingError, match="column 'text' is not numeric"):
        run_processor("peak_detection", source, PeakDetectionParams(column="text"), lambda _p: None)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the footer is gone
    gone = DataSource(path=broken, name=broken.name, format="parquet", row_count=rows, columns=source.columns)
    with pytest.raises(DataFileError, match=r"broken\.parquet: cannot read as parquet"):
        run_processor("peak_detection", gone, PeakDetectionParams(column="f64"), lambda _p: None)


@pytest.mark.parametrize("kwargs", [{}, {"height": 0.5, "distance": 7}, {"prominence": 0.8, "wlen": 51}])
def test_peak_detection_on_parquet_with_nulls_equals_find_peaks_on_the_pandas_column(
    tmp_path: Path, kwargs: dict
) -> None:
    frame = signal_frame(6_000)
    path = tmp_path / "signal.parquet"
    frame.to_parquet(path, row_group_size=2_000)
    params = PeakDetectionParams(column="voltage", chunk_rows=900, max_peaks=50, **kwargs)
    result = run_processor("peak_detection", source_for(path), params, lambda _p: None)
    values = pd.read_parquet(path)["voltage"].to_numpy(dtype=float, na_value=np.nan)
    expected, _ = find_peaks(values, **kwargs)
    assert result["count"] == len(expected)
    assert [p["index"] for p in result["peaks"]] == expected[:50].tolist()
    assert [p["value"] for p in result["peaks"]] == values[expected[:50]].tolist()
    assert result["series"]["voltage"]["values"][:3] == [
        None if np.isnan(v) else v for v in values[:: result["step"]][:3].tolist()
    ]


def iso_variants(rows: int) -> list[str]:
    """ISO-8601 as devices write it: mixed precision, T or space, Z, offsets, none."""
    base = pd.Timestamp("2024-03-01 08:00:00")
    values = []
    for i in range(rows):
        stamp = (base + pd.Timedelta(microseconds=15_151 * i)).isoformat()
        kind = i % 5
        values.append(
            stamp.replace("T", " ")
            if kind == 0
            else stamp + "Z"
            if kind == 1
            else stamp[:19] + "+02:00"
            if kind == 2
            else stamp[:16]
            if kind == 3
            else stamp
        )
    return values


def test_data_quality_accepts_iso_8601_variants_on_100k_rows_and_names_bad_rows(tmp_path: Path) -> None:
    values = iso_variants(100_000)
    values[4242] = "2024-13-45T99:00:00"
    values[77_777] = "yesterday"
    path = tmp_path / "stamps.csv"
    pd.DataFrame({"time": values, "ppg": np.arange(100_000) % 97}).to_csv(path, index=False)
    params = validate_request("data_quality", {"chunk_rows": 30_000, "expect": {"time": {"type": "datetime"}}})
    result = run_processor("data_quality", source_for(path), params, lambda _p: None)
    (failure,) = result["schema"]["failures"]
    assert failure == {"column": "time", "check": "datetime (ISO-8601)", "count": 2, "rows": [4242, 77_777]}
    values[4242], values[77_777] = values[0], values[1]
    pd.DataFrame({"time": values}).to_csv(path, index=False)
    result = run_processor("data_quality", source_for(path), params, lambda _p: None)
    assert result["schema"]["passed"], result["schema"]


def test_an_unknown_parameter_is_named_even_when_a_required_one_is_missing() -> None:
    with pytest.raises(InvalidRequest) as error:
        validate_request("rolling_mean", {"windw": 5})
    assert error.value.field == "parameters.windw"
    assert "unknown parameter 'windw'" in error.value.message
    assert "window" in error.value.message


def test_a_european_spreadsheet_export_reads_as_numbers_and_equals_its_comma_separated_twin(tmp_path: Path) -> None:
    frame = signal_frame(2500).rename(columns={"voltage": "Herzfrequenz (bpm)", "other": "Temp °C"})
    plain = tmp_path / "vitals.csv"
    frame.to_csv(plain, index=False)
    european = tmp_path / "vitals_de.csv"
    european.write_text("\ufeff" + frame.to_csv(index=False, sep=";", decimal=","), encoding="utf-8")
    tabbed = tmp_path / "vitals.tsv"
    frame.to_csv(tabbed, index=False, sep="\t")
    windows = tmp_path / "vitals_windows.csv"  # Excel's "CSV (semicolon delimited)" on Windows: cp1252
    windows.write_bytes(frame.to_csv(index=False, sep=";", decimal=",").encode("cp1252"))
    unicode_text = tmp_path / "vitals_unicode.txt"  # Excel's "Unicode Text": UTF-16 with a BOM, tabs
    unicode_text.write_bytes(frame.to_csv(index=False, sep="\t").encode("utf-16"))
    meta = describe_file(european, european.name, chunk_rows=700)
    assert [c["name"] for c in meta.columns] == ["t", "Herzfrequenz (bpm)", "Temp °C"]
    assert [c["dtype"] for c in meta.columns][1:] == ["float64", "float64"]
    params = RollingMeanParams(window=9, columns=["Herzfrequenz (bpm)"])
    files = (plain, european, tabbed, windows, unicode_text)
    for path in files[3:]:
        assert [c["name"] for c in describe_file(path, path.name).columns] == ["t", "Herzfrequenz (bpm)", "Temp °C"]
    results = [run_processor("rolling_mean", source_for(p, 700), params, lambda _p: None) for p in files]
    assert all(r == results[0] for r in results)
    # A semicolon file of point decimals keeps its points; a comma file is never re-read with another delimiter.
    points = tmp_path / "points.csv"
    points.write_text("a;b\n1.5;2\n2.5;3\n", encoding="utf-8")
    assert [c["dtype"] for c in describe_file(points, points.name).columns] == ["float64", "int64"]
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('"Temp; C",HR\n36.6,70\n', encoding="utf-8")
    assert [c["name"] for c in describe_file(quoted, quoted.name).columns] == ["Temp; C", "HR"]


def test_a_physionet_export_with_quoted_names_and_a_units_row_reads_as_numbers(tmp_path: Path) -> None:
    frame = signal_frame(3000)
    path = tmp_path / "samples.csv"  # PhysioNet's "samples to CSV": names in single quotes, a row of units
    lines = ["'Elapsed time','MLII','V5'", "'hh:mm:ss.mmm','mV','mV'"]
    lines += [
        f"'0:{i / 360:06.3f}',{v:.6f},{w:.6f}" for i, (v, w) in enumerate(zip(frame.voltage, frame.other, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = describe_file(path, path.name, chunk_rows=700)
    assert meta.row_count == 3000
    assert meta.columns == [
        {"name": "Elapsed time", "dtype": "str", "unit": "hh:mm:ss.mmm"},
        {"name": "MLII", "dtype": "float64", "unit": "mV"},
        {"name": "V5", "dtype": "float64", "unit": "mV"},
    ]
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"MLII": frame.voltage.round(6)}).to_csv(plain, index=False)
    params = validate_request("peak_detection", {"column": "MLII", "height": 0.5})
    assert (
        run_processor("peak_detection", source_for(path, 700), params, lambda _p: None)["peaks"]
        == (run_processor("peak_detection", source_for(plain, 700), params, lambda _p: None)["peaks"])
    )
    # A first row of text that is data, or missing values, is never skipped as units.
    for second in ("Ana,Gomez", "NA,NA", "high,low", "Sam,Min", "mV,"):
        data = tmp_path / "names.csv"
        data.write_text(f"name,score\n{second}\nBo,3\nCy,4\n", encoding="utf-8")
        assert describe_file(data, data.name).row_count == 3, second


def test_data_quality_counts_duplicate_rows_with_nested_parquet_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    nested = [{"a": i % 3, "b": [1, i % 3]} for i in range(30)]
    table = pa.table({"k": pa.array([i % 3 for i in range(30)]), "nested": pa.array(nested), "tags": [["x"]] * 30})
    path = tmp_path / "nested.parquet"
    pq.write_table(table, path, row_group_size=7)
    result = run_processor("data_quality", source_for(path, 7), validate_request("data_quality", {}), lambda _p: None)
    assert result["rows"] == 30
    assert result["duplicate_rows"] == 27  # three distinct rows, each ten times, across chunks
    # The file's preview (GET /api/etl/files/{id}/preview) holds them as JSON can.
    from clinicflow.processing.datafiles import preview

    head = json.loads(json.dumps(preview(path, "parquet", path.name, rows=2)["head"]))
    assert head[1] == {"k": 1, "nested": {"a": 1, "b": [1, 1]}, "tags": ["x"]}


def test_an_excel_workbook_reads_as_its_first_sheet_and_equals_its_csv_twin(tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    from openpyxl import Workbook

    from clinicflow.processing.files import as_table_file

    frame = signal_frame(2500).round(6)  # a device's precision (openpyxl writes 16 significant digits, not 17)
    book = Workbook()
    sheet = book.active
    sheet.title = "Vitals"
    sheet.append(["time", "t", "voltage", "other", "note"])
    start = datetime(2024, 5, 1, 8, 0, 0)
    for i, row in enumerate(frame.itertuples(index=False)):
        sheet.append([start + timedelta(seconds=i), int(row.t), float(row.voltage), float(row.other), None])
        if i == 10:
            sheet.append([])  # an empty row in the middle is left out, as a CSV reader skips a blank line
    sheet["E3"] = "artefact"
    book.create_sheet("Notes").append(["not", "read"])
    workbook = tmp_path / "upload-1f2e"  # as the service keeps an upload: no suffix
    book.save(workbook)
    table_path, name, note = as_table_file(workbook, "vitals.xlsx")
    assert (name, table_path.suffix) == ("vitals-Vitals.csv", ".csv")
    assert note == "sheet 'Vitals' read, of 'Vitals', 'Notes'"
    meta = describe_file(table_path, name, chunk_rows=700)
    assert [(c["name"], c["dtype"]) for c in meta.columns][1:4] == [
        ("t", "int64"),
        ("voltage", "float64"),
        ("other", "float64"),
    ]
    assert meta.row_count == 2500
    head = table_path.read_text(encoding="utf-8").splitlines()[:3]
    assert head[1].startswith("2024-05-01 08:00:00,0,")
    assert head[2].endswith(",artefact")
    # Every float exactly as stored: the sheet's rolling mean equals the CSV's.
    plain = tmp_path / "vitals.csv"
    frame.to_csv(plain, index=False)
    params = RollingMeanParams(window=9, columns=["voltage"])
    ours = run_processor("rolling_mean", source_for(table_path, 700), params, lambda _p: None)
    theirs = run_processor("rolling_mean", source_for(plain, 700), params, lambda _p: None)
    assert ours == theirs
    # Not a table: the cell is named; nothing is dropped silently.
    sheet["G5"] = 1.5
    book.save(workbook)
    with pytest.raises(DataFileError, match=r"vitals.xlsx: sheet 'Vitals': cell G5 has a value but no header"):
        as_table_file(workbook, "vitals.xlsx")
    assert not workbook.with_name(workbook.name + ".csv").exists()  # no half-written sheet left behind
    legacy = tmp_path / "old.xls"
    legacy.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    with pytest.raises(DataFileError, match=r"old.xls: .*save it as .xlsx or CSV"):
        describe_file(*as_table_file(legacy, legacy.name)[:2])


def test_a_file_of_numbers_only_keeps_its_first_row_and_numpy_savetxt_columns_split_on_spaces(tmp_path: Path) -> None:
    frame = signal_frame(3000).fillna(0.0)
    named = tmp_path / "named.csv"
    frame.to_csv(named, index=False, header=["column_1", "column_2", "column_3"])
    saved = tmp_path / "ecg.txt"  # numpy.savetxt: no header, columns cut by a space, %.18e
    np.savetxt(saved, frame.to_numpy())
    headerless = tmp_path / "mitbih_train.csv"  # a dataset's CSV of numbers only
    np.savetxt(headerless, frame.to_numpy(), delimiter=",", fmt="%.17g")
    single = tmp_path / "samples.txt"  # one value a line
    np.savetxt(single, frame["voltage"].to_numpy())
    for path in (saved, headerless):
        meta = describe_file(path, path.name, chunk_rows=700)
        assert meta.row_count == 3000, path.name  # the first line is a row, not a header
        assert [c["name"] for c in meta.columns] == ["column_1", "column_2", "column_3"]
        assert meta.columns[1]["dtype"] == "float64"
    assert [c["name"] for c in describe_file(single, single.name).columns] == ["column_1"]
    params = RollingMeanParams(window=9, columns=["column_2"])
    results = [
        run_processor("rolling_mean", source_for(p, 700), params, lambda _p: None) for p in (named, saved, headerless)
    ]
    assert results[1] == results[0]
    assert results[2] == results[0]
    # Spaces with a header line are columns too; a header that is a number is still a header only if not all are.
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("time  hr\n0.0  71.5\n0.5  72.0\n", encoding="utf-8")
    assert [c["name"] for c in describe_file(spaced, spaced.name).columns] == ["time", "hr"]
    years = tmp_path / "years.csv"
    years.write_text("region,2023,2024\nnorth,1,2\n", encoding="utf-8")
    assert [c["name"] for c in describe_file(years, years.name).columns] == ["region", "2023", "2024"]


def test_a_devices_metadata_lines_above_its_samples_are_skipped(tmp_path: Path) -> None:
    # An Apple Watch ECG export: key,value metadata, blank lines, then one sample a line (no header).
    preamble = (
        'Name,Jane Appleseed\nDate of Birth,"Jan 1, 1980"\nRecorded Date,2021-03-10 09:12:33 -0800\n'
        'Classification,Sinus Rhythm\nSymptoms,\nSoftware Version,1.90\nDevice,"Watch6,2"\n'
        "Sample Rate,512 hertz\n\n\nLead,Lead I\nUnit,µV\n\n"
    )
    samples = np.round(np.sin(np.arange(15_360) / 20) * 300, 3)
    ecg = tmp_path / "ecg_2021-03-10.csv"
    ecg.write_text(preamble + "\n".join(str(v) for v in samples) + "\n", encoding="utf-8")
    meta = describe_file(ecg, ecg.name, chunk_rows=4000)
    assert ([c["name"] for c in meta.columns], meta.row_count) == (["column_1"], 15_360)
    result = run_processor("rolling_mean", source_for(ecg, 4000), RollingMeanParams(window=5), lambda _p: None)
    assert result["summary"]["column_1"]["count"] == 15_360 - 4  # a window of 5: the first four have no mean
    # Metadata above a header and a units row: both still read.
    logged = tmp_path / "monitor.csv"
    rows = "\n".join(f"{i * 0.5},{70 + i % 7}" for i in range(40))
    logged.write_text("Monitor,Bedside 7\nPatient ID,ANON-1\nExported by;clinic\n\ntime,HR\ns,bpm\n" + rows + "\n")
    meta = describe_file(logged, logged.name)
    assert [(c["name"], c.get("unit")) for c in meta.columns] == [("time", "s"), ("HR", "bpm")]
    assert meta.row_count == 40
    # A blank line inside a table is not metadata: every row is kept.
    gap = tmp_path / "gap.csv"
    gap.write_text(
        "t,v\n" + "\n".join(f"{i},{i}" for i in range(5)) + "\n\n" + "\n".join(f"{i},{i}" for i in range(5, 20)) + "\n"
    )
    assert describe_file(gap, gap.name).row_count == 20
    spaced = tmp_path / "spaced_header.csv"  # a header, a blank line, then the rows
    spaced.write_text("t,v\n\n" + "\n".join(f"{i},{i * 2}" for i in range(30)) + "\n")
    meta = describe_file(spaced, spaced.name)
    assert ([c["name"] for c in meta.columns], meta.row_count) == (["t", "v"], 30)
