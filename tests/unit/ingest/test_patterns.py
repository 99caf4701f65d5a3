"""Glob semantics and pattern parsing (pure functions, no services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicflow.connectors.objectstore.patterns import PatternError, glob_match, literal_prefix, parse_location


@pytest.mark.parametrize(
    ("glob", "name", "expected"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "dir/a.txt", False),  # * never crosses '/'
        ("a/*/c.txt", "a/b/c.txt", True),
        ("a/*/c.txt", "a/b/x/c.txt", False),
        ("a/**/c.txt", "a/c.txt", True),  # ** is zero or more folders
        ("a/**/c.txt", "a/b/c.txt", True),
        ("a/**/c.txt", "a/b/x/c.txt", True),
        ("a/**/c.txt", "ab/c.txt", False),
        ("a/**", "a/b/x/c.txt", True),
        ("a/**", "b/c.txt", False),
        ("**/*.txt", "x.txt", True),
        ("**/*.txt", "d/e/x.txt", True),
        ("**/*.txt", "d/e/x.txt.bak", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file12.txt", False),
        ("file?.txt", "file/.txt", False),  # ? never matches '/'
        ("r[0-9].csv", "r5.csv", True),
        ("r[!0-9].csv", "r5.csv", False),
        ("r[!0-9].csv", "rx.csv", True),
        ("a+b(1).txt", "a+b(1).txt", True),  # regex characters are literal
        ("a+b(1).txt", "aab(1).txt", False),
        ("exact/name.txt", "exact/name.txt", True),
        ("exact/name.txt", "exact/name.txt2", False),
    ],
)
def test_glob_match(glob: str, name: str, expected: bool) -> None:
    assert glob_match(glob, name) is expected


@pytest.mark.parametrize(
    ("glob", "prefix"),
    [
        ("a/b/**/*.txt", "a/b/"),
        ("reports/2024-*.txt", "reports/2024-"),
        ("*.txt", ""),
        ("x/y?.txt", "x/y"),
        ("no/wildcards.txt", "no/wildcards.txt"),
        ("d/[ab].txt", "d/"),
    ],
)
def test_literal_prefix(glob: str, prefix: str) -> None:
    assert literal_prefix(glob) == prefix


def test_parse_bucket_patterns() -> None:
    loc = parse_location("s3://bucket/in/**/*.txt")
    assert (loc.scheme, loc.bucket, loc.glob, loc.prefix) == ("s3", "bucket", "in/**/*.txt", "in/")
    assert loc.uri("in/a/b.txt") == "s3://bucket/in/a/b.txt"
    assert parse_location("gs://b").glob == "**"
    assert parse_location("s3://b/in/file?.txt").glob == "in/file?.txt"  # '?' is a wildcard, not a URL query
    assert parse_location("synthetic://events?count=10").query == "count=10"
    with pytest.raises(PatternError, match="scheme"):
        parse_location("ftp://x/y")
    with pytest.raises(PatternError, match="bucket"):
        parse_location("s3://buck*/x")
    with pytest.raises(PatternError, match="empty"):
        parse_location(" ")


def test_parse_local_patterns(tmp_path: Path) -> None:
    loc = parse_location(str(tmp_path / "in" / "**" / "*.txt"))
    assert (loc.scheme, loc.bucket, loc.glob) == ("file", str(tmp_path / "in"), "**/*.txt")
    assert loc.uri("a/b.txt") == (tmp_path / "in" / "a" / "b.txt").as_uri()
    assert parse_location(str(tmp_path)).glob == "**"  # a folder means everything below it
    loc = parse_location(str(tmp_path / "rep?.txt"))
    assert (loc.bucket, loc.glob) == (str(tmp_path), "rep?.txt")
