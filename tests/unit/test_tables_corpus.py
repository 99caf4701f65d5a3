"""The malformed-tables.yml corpus: each tests/unit/tables_corpus/NAME.yml fails with the one line in NAME.expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.opendental.tables.config import ConfigError, load_tables_config

CORPUS = Path(__file__).parent / "tables_corpus"
CASES = sorted(CORPUS.glob("*.yml"))


def test_corpus_is_large_and_paired() -> None:
    assert len(CASES) >= 25
    assert all(case.with_suffix(".expected").is_file() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_malformed_tables_yml_gives_its_one_line_error(case: Path) -> None:
    expected = case.with_suffix(".expected").read_text(encoding="utf-8").strip()
    with pytest.raises(ConfigError) as info:
        load_tables_config(case)
    message = str(info.value)
    assert "\n" not in message, "a config error is one line"
    assert message.replace(str(case.parent) + "/", "") == expected
    # Never the file's bytes: the one non-UTF-8 file holds a marker that must not be echoed.
    assert "secret-bytes" not in message


def test_directory_and_missing_paths_are_one_line(tmp_path: Path) -> None:
    for path, expected in ((tmp_path, "is a directory"), (tmp_path / "nope.yml", "file not found")):
        with pytest.raises(ConfigError) as info:
            load_tables_config(path)
        assert expected in str(info.value)
        assert "\n" not in str(info.value)
