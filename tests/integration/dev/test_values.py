"""Seeded data: deterministic, and every edge value present byte-exact (read back raw from MariaDB)."""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable

import pytest

from blocks.databases import MySQLServer
from clinicflow_dev import generator

from .conftest import checksums, query, raw_rows


@pytest.fixture(scope="module")
def seeded(module_db: MySQLServer) -> tuple[MySQLServer, dict[str, int]]:
    """The demo database (generator defaults) plus three filler tables, made once for the module."""
    return module_db, generator.seed(module_db, filler_tables=3)


def test_counts_are_the_rows_in_each_table(seeded: tuple[MySQLServer, dict[str, int]]) -> None:
    server, counts = seeded
    for table, expected in counts.items():
        assert query(server, f"SELECT COUNT(*) FROM `{table}`") == [(expected,)], table
    assert counts["securitylog"] == max(counts.values())  # the largest table, as in production
    assert counts["definition"] < counts["patient"]
    assert 5_000 < sum(counts.values()) < 60_000  # demo size: seconds to make


def test_same_seed_same_data_other_seed_other_data(
    seeded: tuple[MySQLServer, dict[str, int]], make_mysql_db: Callable[[str], MySQLServer]
) -> None:
    server, counts = seeded
    again, other = make_mysql_db("gen_again"), make_mysql_db("gen_other")
    assert generator.seed(again, filler_tables=3) == counts
    tables = sorted(counts)
    assert checksums(again, tables) == checksums(server, tables)
    generator.seed(other, seed=43, filler_tables=3)
    pairs = zip(checksums(other, tables).values(), checksums(server, tables).values(), strict=True)
    differ = {t for t, (a, b) in zip(tables, pairs, strict=True) if a != b}
    # The seed drives every generated value of the realistic tables.
    assert {"patient", "appointment", "procedurelog", "commlog", "payment", "claimproc", "securitylog"} <= differ


def test_rows_do_not_depend_on_how_many_are_made(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    # Row n is a function of (seed, n) only: a larger or appended fill keeps the first rows as they were.
    small, large = make_mysql_db("gen_small"), make_mysql_db("gen_large")
    generator.seed(small, rows={"patient": 100}, scale=0, edge_cases=False)
    generator.seed(large, rows={"patient": 60}, scale=0, edge_cases=False)
    assert generator.fill_table(large, "patient", 40) == 40  # appended after the current maximum key
    assert checksums(small, ["patient"]) == checksums(large, ["patient"])


def test_edge_values_are_stored_byte_exact(seeded: tuple[MySQLServer, dict[str, int]]) -> None:
    server, _ = seeded
    rows = {r["Label"].decode(): r for r in raw_rows(server, f"SELECT * FROM `{generator.EDGECASE_TABLE}`")}
    assert len(rows) == 5

    zero = rows["zero dates"]
    assert (zero["DateCol"], zero["DateTimeCol"]) == (b"0000-00-00", b"0000-00-00 00:00:00")
    assert zero["BlobCol"] == b""  # empty blob, not NULL
    assert (zero["Bit1"], zero["Bit10"]) == (b"\x00", b"\x00\x00")

    unset = rows["unset dates 0001-01-01"]
    assert (unset["DateCol"], unset["DateTimeCol"]) == (b"0001-01-01", b"0001-01-01 00:00:00")
    assert unset["TimeCol"] == b"-838:59:59"
    assert unset["TextMb3"] == "Zoë Ångström — café, 日本語 李".encode()
    assert unset["TextMb4"] == "emoji 😀👍🏽 and 𝄞".encode()
    assert any(len(ch.encode()) == 4 for ch in unset["TextMb4"].decode())
    assert unset["BlobCol"] == bytes(range(256))
    assert unset["VarBin"] == b"\x00\xff\x00"
    assert unset["UBig"] == b"18446744073709551615"
    assert (unset["UInt"], unset["USmall"], unset["Signed"]) == (b"4294967295", b"65535", b"-2147483648")
    assert unset["Flag"] == b"1"
    assert float(unset["Dbl"]) == sys.float_info.max
    assert (
        struct.unpack("f", struct.pack("f", float(unset["Flt"])))[0] == struct.unpack("f", struct.pack("f", 3.4e38))[0]
    )
    assert unset["Dec"] == b"99999999.9999"
    assert (unset["EnumCol"], unset["SetCol"]) == (b"c d", b"x,z")
    assert json.loads(unset["JsonCol"]) == {"k": [1, 2.5, None, "é"]}
    assert (unset["Bit1"], unset["Bit10"]) == (b"\x01", b"\x03\xff")
    assert unset["YearCol"] == b"2155"

    escapes = rows["NUL and escapes"]
    assert escapes["TimeCol"] == b"123:45:06"
    assert escapes["TextMb3"] == b"a\x00b"
    assert escapes["TextMb4"] == b"tab\t nl\n cr\r bs\\ \x00 end"
    assert escapes["LongText"] == b"long text " * 2000
    assert (escapes["BlobCol"], escapes["VarBin"], escapes["CharCol"]) == (b"\x00", b"\\N", b"\\N")
    assert float(escapes["Dbl"]) == -2.2250738585072014e-308

    nulls = rows["NULLs and empty strings"]
    assert nulls["TimeCol"] is None
    assert nulls["TextMb4"] is None
    assert nulls["BlobCol"] is None
    assert nulls["TextMb3"] == b""
    assert nulls["CharCol"] == b""  # empty string next to NULL

    words = rows["string NULL and backslash N"]
    assert (words["TextMb3"], words["TextMb4"], words["LongText"]) == (b"NULL", b"\\N", b"\\")
    assert words["BlobCol"] == b"\n\r\t"
    assert words["TimeCol"] == b"-00:00:01"


def test_realistic_tables_hold_opendental_values(seeded: tuple[MySQLServer, dict[str, int]]) -> None:
    server, _ = seeded

    def count(sql: str) -> int:
        return int(query(server, sql)[0][0])

    assert count("SELECT COUNT(*) FROM patient WHERE Birthdate = '0001-01-01'") > 0  # OpenDental's "no date"
    assert count("SELECT COUNT(*) FROM procedurelog WHERE ProcDate = '0001-01-01'") > 0
    assert count("SELECT COUNT(*) FROM patient WHERE FName = '李' OR FName = 'Zoë'") > 0
    assert count("SELECT COUNT(*) FROM patient WHERE LName = 'O''Brien'") > 0
    assert count("SELECT COUNT(*) FROM commlog WHERE Note LIKE '%😀%'") > 0  # 4-byte utf8mb4 text
    assert count("SELECT COUNT(*) FROM appointment WHERE Note LIKE '%\\t%' OR Note LIKE '%\\n%'") > 0
    assert count("SELECT COUNT(*) FROM payment WHERE PayNote = 'Back\\\\slash path C:\\\\OD'") > 0  # backslashes kept
    assert count("SELECT COUNT(*) FROM document WHERE Thumbnail IS NULL") > 0
    assert count("SELECT COUNT(*) FROM document WHERE LENGTH(Thumbnail) = 32") > 0
    assert count("SELECT COUNT(DISTINCT DateTStamp) FROM procedurelog") > 1
    assert count("SELECT COUNT(*) FROM adjustment WHERE AdjAmt > 0") == 0  # adjustments are negative money
    assert count("SELECT COUNT(*) FROM securitylog WHERE SecurityLogNum <> 0") == count(
        "SELECT COUNT(*) FROM securitylog"
    )
