"""What real exports hold around and inside their tables: a device's footer lines, dashes for missing values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinicflow.processing.csv_dialect import csv_file_options, footer_offset
from clinicflow.processing.datafiles import describe_file, iter_chunks


def _ecg_export(rows: int) -> str:
    t = np.arange(rows) / 250
    lines = ["Time,Lead I", "s,mV", *(f"{x:.3f},{np.sin(x * 7):.4f}" for x in t)]
    return "\n".join(lines) + "\n\nEnd of recording\nTotal samples," + str(rows) + "\n"


def test_a_devices_footer_lines_are_not_rows(tmp_path: Path) -> None:
    for rows in (40, 50_000):  # the footer inside the first bytes read, and far below them
        path = tmp_path / f"ecg-{rows}.csv"
        path.write_text(_ecg_export(rows))
        meta = describe_file(path, path.name)
        # Read as rows, "Total samples,5000" made a 5,000 mV sample and the Time column text.
        assert meta.row_count == rows
        assert meta.footer_bytes == len(f"End of recording\nTotal samples,{rows}\n")
        assert [c["dtype"] for c in meta.columns] == ["float64", "float64"]
        frame = pd.concat(iter_chunks(path, "csv", chunk_rows=7_000))
        assert len(frame) == rows
        assert frame["Lead I"].abs().max() <= 1.0


def test_a_table_that_ends_as_a_table_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("t,v\n" + "".join(f"{i},{i * 2}\n" for i in range(1000)))
    assert footer_offset(path, csv_file_options(path)) is None
    assert describe_file(path, path.name).row_count == 1000
    # A line of text under the table is a footer, left out and said (the upload's response carries the note).
    path.write_text("t,v\n" + "".join(f"{i},{i * 2}\n" for i in range(1000)) + "checked by,RN\n")
    meta = describe_file(path, path.name)
    assert (meta.row_count, meta.footer_bytes) == (1000, len("checked by,RN\n"))


def test_dashes_are_missing_values_not_text(tmp_path: Path) -> None:
    path = tmp_path / "vitals.csv"
    path.write_text(
        "timestamp,spo2,hr\n2024-03-14T08:00:00+01:00,97,76\n2024-03-14T08:01:00+01:00,--,-\n"
        "2024-03-14T08:02:00+01:00,98,75\n"
    )
    frame = pd.concat(iter_chunks(path, "csv"))
    assert frame["spo2"].dtype == np.float64
    assert frame["spo2"].isna().tolist() == [False, True, False]
    assert frame["hr"].isna().sum() == 1


def test_a_processors_default_columns_are_the_signals_not_the_time(tmp_path: Path) -> None:
    from clinicflow.processing.base import DataSource
    from clinicflow.processing.processors import PeakDetectionParams, RollingMeanParams, peak_detection, rolling_mean

    path = tmp_path / "ecg.csv"
    t = np.arange(2000) / 250
    pd.DataFrame({"time_s": t, "Lead II": np.sin(2 * np.pi * 1.2 * t)}).to_csv(path, index=False)
    source = DataSource(path, path.name, "csv", 2000, ["time_s", "Lead II"])
    # The rolling mean of the time column was drawn as a diagonal line on its own axis.
    assert list(rolling_mean(source, RollingMeanParams(window=25), lambda _: None)["series"]) == ["Lead II"]
    assert peak_detection(source, PeakDetectionParams(), lambda _: None)["column"] == "Lead II"


def test_a_workbooks_cover_sheet_is_passed_over_for_its_table_and_the_upload_says_which(tmp_path: Path) -> None:
    from openpyxl import Workbook

    from clinicflow.processing.files import as_table_file

    book = Workbook()
    cover = book.active
    cover.title = "Cover"
    for line in ("Glucose profile", "Ward 3", "Exported 2024-03-14"):
        cover.append([line])
    data = book.create_sheet("Data")
    data.append(["sample_time", "glucose_mmol_L"])
    for i in range(5):
        data.append([f"2024-03-14 0{6 + i}:00:00", 5.5 + i / 10])
    workbook = tmp_path / "upload-9a"
    book.save(workbook)
    # The cover's three title lines were the "table", and `glucose_mmol_L` was "no column in the data file".
    table_path, name, note = as_table_file(workbook, "lab_glucose.xlsx")
    assert (name, note) == ("lab_glucose-Data.csv", "sheet 'Data' read, of 'Cover', 'Data'")
    meta = describe_file(table_path, name)
    assert ([c["name"] for c in meta.columns], meta.row_count) == (["sample_time", "glucose_mmol_L"], 5)


def test_data_quality_gives_a_time_columns_range_and_no_verdict_without_expectations(tmp_path: Path) -> None:
    from clinicflow.processing.base import DataSource
    from clinicflow.processing.quality import DataQualityParams, data_quality

    path = tmp_path / "vitals.parquet"
    stamps = pd.date_range("2024-03-14 06:00", periods=4, freq="15min", tz="UTC")
    pd.DataFrame({"at": stamps, "hr": [70.0, 72.0, None, 75.0]}).to_parquet(path)
    source = DataSource(path, path.name, "parquet", 4, ["at", "hr"])
    result = data_quality(source, DataQualityParams(), lambda _: None)
    assert (result["columns"]["at"]["min"], result["columns"]["at"]["max"]) == (
        "2024-03-14T06:00:00+00:00",
        "2024-03-14T06:45:00+00:00",
    )
    assert (result["columns"]["hr"]["min"], result["columns"]["hr"]["max"]) == (70.0, 75.0)
    # No `expect`: nothing was checked, so no verdict (it said "passed": false).
    assert result["schema"] == {"checked": False, "passed": None, "failures": []}


def test_a_last_row_with_a_bad_value_stays_a_row_for_the_reader_to_name(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("t,v\n" + "".join(f"{i},{i % 5}\n" for i in range(100)) + "100,n/a?\n")
    assert footer_offset(path, csv_file_options(path)) is None
    assert describe_file(path, path.name).row_count == 101
