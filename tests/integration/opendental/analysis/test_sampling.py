"""Watermark choice and bounded sampling on small hand-made tables in the real MariaDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from blocks.databases import MySQLServer
from clinicflow.opendental.tables import analysis_rules, schema_analysis, source_schema
from clinicflow.opendental.tables.config import ExtractionStrategy

from .conftest import execute

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
# Small thresholds so a few thousand rows exercise the "large table" paths.
RULES = analysis_rules.AnalysisRules(full_copy_max_rows=100, small_table_rows=1_000, sample_rows=200)
STAMP = "timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()"


def analyse(
    server: MySQLServer, rules: analysis_rules.AnalysisRules = RULES
) -> dict[str, schema_analysis.TableAnalysis]:
    return dict(schema_analysis.analyze_source(server, rules, now=NOW).tables)


def test_watermark_choice_on_hand_made_tables(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    server = make_mysql_db("ansample")
    execute(
        server,
        # Both edit and entry columns: the edit column wins.
        f"CREATE TABLE claim (ClaimNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        f"SecDateTEntry datetime NOT NULL DEFAULT '0001-01-01', SecDateTEdit {STAMP}) ENGINE=MyISAM",
        "INSERT INTO claim (SecDateTEntry, SecDateTEdit) SELECT '2024-01-01' + INTERVAL seq MINUTE, "
        "'2024-02-01' + INTERVAL seq MINUTE FROM seq_1_to_500",
        # DateTStamp holds future values in the newest rows: rejected, the entry column is used.
        f"CREATE TABLE appointment (AptNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        f"DateTStamp {STAMP}, SecDateTEntry datetime NOT NULL) ENGINE=MyISAM",
        "INSERT INTO appointment (DateTStamp, SecDateTEntry) SELECT IF(seq > 490, '2030-01-01', "
        "'2024-01-01' + INTERVAL seq MINUTE), '2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_500",
        # The entry column is mostly '0001-01-01' (unset): no usable column, the auto-increment key is used.
        "CREATE TABLE securitylog (SecurityLogNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "DateTEntry datetime NOT NULL DEFAULT '0001-01-01', LogText text) ENGINE=MyISAM",
        "INSERT INTO securitylog (DateTEntry, LogText) SELECT IF(seq % 4 = 0, '2024-01-01', '0001-01-01'), "
        "CONCAT('log ', seq) FROM seq_1_to_500",
        # Composite key, watermark column with zero dates mixed in (fewer than 5%: still usable).
        f"CREATE TABLE patplan (PatNum bigint(20) NOT NULL, Ordinal tinyint(3) unsigned NOT NULL, "
        f"SecDateTEdit {STAMP}, PRIMARY KEY (PatNum, Ordinal)) ENGINE=MyISAM",
        "INSERT INTO patplan SELECT seq, 1 + seq % 2, IF(seq % 50 = 0, '0000-00-00 00:00:00', "
        "'2024-03-01' + INTERVAL seq SECOND) FROM seq_1_to_500",
        # No primary key at all.
        "CREATE TABLE entrylog (UserNum bigint(20), EntryDateTime datetime) ENGINE=MyISAM",
        "INSERT INTO entrylog SELECT seq, '2024-01-01' FROM seq_1_to_500",
        # Tiny lookup table (MyISAM: an exact TABLE_ROWS; InnoDB's is a background estimate that can lag).
        "CREATE TABLE definition (DefNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, ItemName varchar(255)) "
        "ENGINE=MyISAM",
        "INSERT INTO definition (ItemName) SELECT CONCAT('Def ', seq) FROM seq_1_to_20",
        # A few rows of scanned documents (20 MB): not a tiny table, copied by its watermark.
        f"CREATE TABLE document (DocNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, RawBase64 mediumtext, "
        f"DateTStamp {STAMP}) ENGINE=MyISAM",
        "INSERT INTO document (RawBase64, DateTStamp) SELECT REPEAT('QUJD', 100000), '2024-01-01' + INTERVAL seq "
        "MINUTE FROM seq_1_to_50",
    )
    result = analyse(server)

    claim = result["claim"].config
    assert claim.extraction_strategy is ExtractionStrategy.incremental
    assert claim.incremental_columns == ["SecDateTEdit"]

    appointment = result["appointment"]
    assert appointment.config.incremental_columns == ["SecDateTEntry"]
    assert appointment.watermark.rejected[0][0] == "DateTStamp"
    assert "outside" in appointment.watermark.rejected[0][1]

    securitylog = result["securitylog"]
    assert securitylog.config.incremental_columns == ["SecurityLogNum"]
    assert securitylog.config.extraction_strategy is ExtractionStrategy.incremental_chunked
    assert "only 125 of 500" in securitylog.watermark.rejected[0][1]  # small: the whole table was sampled
    assert securitylog.config.observed_watermark == "500"

    patplan = result["patplan"].config
    assert patplan.primary_key == ["PatNum", "Ordinal"]
    assert patplan.incremental_columns == ["SecDateTEdit"]

    entrylog = result["entrylog"].config
    assert entrylog.primary_key == []
    assert entrylog.extraction_strategy is ExtractionStrategy.full_table
    assert entrylog.incremental_columns == []
    assert result["entrylog"].reason.startswith("no primary key")

    definition = result["definition"].config
    assert definition.extraction_strategy is ExtractionStrategy.full_table
    assert definition.incremental_columns == []
    assert definition.estimated_rows == 20

    document = result["document"].config
    assert (document.estimated_rows, document.estimated_size_mb > 16) == (50, True)
    assert document.extraction_strategy is ExtractionStrategy.incremental
    assert document.incremental_columns == ["DateTStamp"]


def _rows_read(server_conn: object) -> int:
    with server_conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
        return sum(int(value) for _, value in cur.fetchall())


def test_sampling_a_large_table_reads_a_bounded_number_of_rows(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    """The analysis of a 20,000-row table touches a few hundred rows: never a full scan."""
    server = make_mysql_db("anbound")
    execute(
        server,
        f"CREATE TABLE procedurelog (ProcNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        f"ProcFee double, DateTStamp {STAMP}, SecDateTEntry datetime NOT NULL) ENGINE=MyISAM",
        "INSERT INTO procedurelog (ProcFee, DateTStamp, SecDateTEntry) SELECT seq / 7, "
        "'2024-01-01' + INTERVAL seq MINUTE, '2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_20000",
    )
    conn = server.connect()
    try:
        schema = source_schema.read_schema_with(conn, server.database, server.describe())
        info = schema.tables["procedurelog"]
        assert info.table_rows == 20_000  # from information_schema, not counted

        before = _rows_read(conn)
        analysed = schema_analysis.analyze_table(conn, info, RULES, NOW)
        bounded = _rows_read(conn) - before

        before = _rows_read(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT MAX(DateTStamp) FROM procedurelog")  # what a full scan costs
        full_scan = _rows_read(conn) - before
    finally:
        conn.close()
    assert analysed.config.incremental_columns == ["DateTStamp"]
    assert analysed.config.observed_watermark == "2024-01-14 21:20:00"  # the newest row's value
    assert full_scan >= 20_000
    # Each sampled row counts about twice (index read, then the derived table);
    # the sample query and the watermark probe each read the newest sample_rows rows.
    assert bounded <= 5 * RULES.sample_rows, bounded


def test_a_table_that_cannot_be_sampled_is_copied_fully_and_named(make_mysql_db: Callable[[str], MySQLServer]) -> None:
    """A table dropped between reading the schema and sampling it (concurrent DDL) fails alone."""
    server = make_mysql_db("anfail")
    execute(
        server,
        f"CREATE TABLE commlog (CommlogNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, DateTStamp {STAMP})",
        "INSERT INTO commlog (DateTStamp) SELECT '2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_300",
        f"CREATE TABLE document (DocNum bigint(20) NOT NULL AUTO_INCREMENT PRIMARY KEY, DateTStamp {STAMP})",
        "INSERT INTO document (DateTStamp) SELECT '2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_300",
    )
    conn = server.connect()
    try:
        schema = source_schema.read_schema_with(conn, server.database, server.describe())
        execute(server, "DROP TABLE document")
        analysis = schema_analysis.analyze_schema_with(conn, schema, RULES, NOW)
    finally:
        conn.close()
    assert set(analysis.errors) == {"document"}
    assert "'document'" in analysis.errors["document"]
    assert "copied fully" in analysis.errors["document"]
    assert analysis.tables["document"].config.extraction_strategy is ExtractionStrategy.full_table
    assert analysis.tables["commlog"].config.incremental_columns == ["DateTStamp"]
