"""Custom scripts: name rules, folder confinement, signature, time limit, JSON output."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from clinicflow.processing.base import DataSource, InvalidRequest, ProcessingError
from clinicflow.processing.custom import CustomParams, run_custom
from clinicflow.processing.processors import validate_request

SCRIPTS = {
    "column_stats": "def process(df, params):\n    col = params['column']\n"
    "    return {'rows': len(df), 'sum': float(df[col].sum()), 'scale': params.get('scale', 1)}\n",
    "crashes": "def process(df, params):\n    return 1 / 0\n",
    "not_json": "import datetime\ndef process(df, params):\n    return {'when': datetime.datetime(2020, 1, 1)}\n",
    "returns_list": "def process(df, params):\n    return [1, 2]\n",
    "sleeps": "import time\ndef process(df, params):\n    time.sleep(30)\n    return {}\n",
    "one_arg": "def process(df):\n    return {}\n",
    "no_process": "def run(df, params):\n    return {}\n",
    # A KeyError raised inside pandas: the script's line is 3, pandas' is in the thousands.
    "bad_column": "def process(df, params):\n    total = 0\n    return {'sum': float(df['no_such_col'].sum())}\n",
}


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir()
    for name, text in SCRIPTS.items():
        (folder / f"{name}.py").write_text(text, encoding="utf-8")
    (tmp_path / "outside.py").write_text(SCRIPTS["column_stats"], encoding="utf-8")
    os.symlink(tmp_path / "outside.py", folder / "linked_out.py")
    return folder


@pytest.fixture
def source(tmp_path: Path) -> DataSource:
    path = tmp_path / "data.csv"
    pd.DataFrame({"a": [1.5, 2.5, 3.0]}).to_csv(path, index=False)
    return DataSource(path=path, name="data.csv", format="csv", row_count=3, columns=["a"])


def params(scripts: Path, **values: object) -> CustomParams:
    model = validate_request("custom", values, scripts_dir=scripts)
    assert isinstance(model, CustomParams)
    return model


def test_a_script_runs_in_a_subprocess_and_returns_its_dict(scripts: Path, source: DataSource) -> None:
    result = run_custom(
        source, params(scripts, script="column_stats", params={"column": "a", "scale": 2}), lambda _p: None, scripts
    )
    assert result == {
        "processing_type": "custom",
        "script": "column_stats",
        "result": {"rows": 3, "sum": 7.0, "scale": 2},
    }

    # A spreadsheet's European export reaches the script as numbers, as the processors read it.
    european = source.path.with_name("data_de.csv")
    european.write_text("a;b\n1,5;x\n2,5;y\n3,0;z\n", encoding="utf-8")
    result = run_custom(
        DataSource(path=european, name=european.name, format="csv", row_count=3, columns=["a", "b"]),
        params(scripts, script="column_stats", params={"column": "a"}),
        lambda _p: None,
        scripts,
    )
    assert result["result"] == {"rows": 3, "sum": 7.0, "scale": 1}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../outside", "must match"),
        ("Outside", "must match"),
        ("linked_out", "outside the scripts folder"),
        ("absent", "no script"),
        ("one_arg", "process must take"),
        ("no_process", "defines no top-level"),
        ("__init__", "must match"),
    ],
)
def test_scripts_are_refused_at_request_time(scripts: Path, name: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        validate_request("custom", {"script": name}, scripts_dir=scripts)
    assert error.value.field == "parameters.script"
    assert reason in error.value.message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("crashes", r"process raised ZeroDivisionError: division by zero \(line 2 of crashes.py\)"),
        ("bad_column", r"process raised KeyError: 'no_such_col' \(line 3 of bad_column.py\)"),
        ("not_json", "not JSON-serialisable"),
        ("returns_list", "returned list, expected dict"),
    ],
)
def test_failing_scripts_fail_with_the_reason(scripts: Path, source: DataSource, name: str, reason: str) -> None:
    with pytest.raises(ProcessingError, match=reason):
        run_custom(source, params(scripts, script=name), lambda _p: None, scripts)


def test_a_script_over_its_time_limit_is_stopped(scripts: Path, source: DataSource) -> None:
    with pytest.raises(ProcessingError, match="exceeded its time limit of 1 s"):
        run_custom(source, params(scripts, script="sleeps", timeout_seconds=1), lambda _p: None, scripts)
