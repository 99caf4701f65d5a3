"""An OpenDental-shaped database generator for tests, the demo and benches.

Shaped by the facts that matter to the copy paths: MyISAM and utf8mb3;
``bigint(20) AUTO_INCREMENT`` keys named ``*Num``; money as ``double``;
enum-like ``tinyint(3) unsigned``; unset dates stored as ``'0001-01-01'``;
change tracking by ``DateTStamp`` (patient, appointment, procedurelog,
commlog, document) or ``SecDateTEdit`` (payment, paysplit, adjustment, claim,
claimproc), both ``timestamp ... ON UPDATE current_timestamp()``;
``securitylog`` is the largest table and has no change column (its watermark
is ``SecurityLogNum``); lookup tables such as ``definition`` are tiny; most
tables are tiny. ``patplan`` has a composite key, ``entrylog`` none.

Rows are made server-side (``INSERT ... SELECT ... FROM seq_1_to_N``, MariaDB's
SEQUENCE engine) from deterministic expressions of the row number ``s`` and the
seed ``k``, so a million rows take seconds, the same seed gives the same data,
and row *n* is the same however many rows are made.

Public API (plain functions; no Prefect):

``create_schema(server, *, filler_tables=0, edge_cases=True) -> list[str]``
    Drop and create the 21 core tables, ``filler_tables`` tiny OpenDental-named
    tables and (``edge_cases``) the ``edgecase`` table; return the names.
``table_names(filler_tables=0, edge_cases=True) -> list[str]``
    The names ``create_schema`` makes, without a server.
``seed(server, *, rows=None, scale=1.0, seed=42, filler_tables=0, edge_cases=True) -> dict[str, int]``
    ``create_schema`` then fill every table; ``rows`` overrides per table, ``scale``
    multiplies the defaults (tables of 23 rows or fewer keep their size). The
    default demo is ~35,000 rows and takes well under a second. Returns rows per table.
``fill_table(server, table, rows, *, seed=42, start=None, fixed_timestamp=None) -> int``
    Append ``rows`` rows to a core table, keys from ``start`` (default: max + 1).
    ``fixed_timestamp='YYYY-MM-DD HH:MM:SS'`` gives every row that change-column value.
``apply_changes(server, table, *, inserts=0, updates=0, deletes=0, seed=7) -> dict[str, list[int]]``
    Deterministic mutations of a single-key core table; updated and inserted rows
    get a change-column value strictly after the table's maximum and NOW(), so
    they are seen even within the same second. Returns
    ``{"inserted": [...], "updated": [...], "deleted": [...]}`` (disjoint keys).
``create_procedurelog_like(server, rows, *, table="procedurelog", seed=42) -> int``
    A fresh 36-column procedurelog-shaped table of ``rows`` rows (benches).
``create_wide_source(server, tables=450, *, seed_value=42) -> dict[str, int]``
    The core tables plus filler up to ``tables`` tables in all (the edgecase table included).
``table_spec(table) -> TableSpec``
    Columns (name, DDL, generating expression), key, change column of a core table.
``EDGECASE_TABLE = "edgecase"``
    One row per value class the copy paths must keep byte-exact: '0000-00-00'
    dates, NUL bytes, all 256 byte values, emoji, unsigned bigint max, negative
    and over-24h TIME, enum/set/json/bit/year/decimal/float, NULL vs ''.

Bad input (unknown table, malformed ``fixed_timestamp``, negative counts) raises
``ValueError`` naming the table or argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from blocks.databases import MySQLServer
from clinicflow.core.sql import quote_ident

# Session mode that lets the generator write legacy values ('0000-00-00'). Set
# explicitly (not only inherited from the block's session settings) because the
# edge cases depend on it whatever the block's default becomes.
_LEGACY_SQL_MODE = "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"
_TABLE_OPTIONS = "ENGINE=MyISAM DEFAULT CHARSET=utf8mb3"
_DSTAMP = "`DateTStamp` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()"
_SECEDIT = "`SecDateTEdit` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp()"
# Tables this small (lookups, filler) keep their size whatever seed()'s scale.
_TINY_TABLE_ROWS = 23
# Base time for generated change columns; rows spread over ~2 years after it.
_BASE_TS = "2023-01-01 00:00:00"


@dataclass(frozen=True)
class TableSpec:
    """One generated table: its DDL, how each column's value is made, its key and change column."""

    name: str
    columns: list[tuple[str, str, str]]  # (name, DDL type, generator SQL expression of `s` = seq, `k` = seed)
    primary_key: list[str]
    change_column: str | None = None
    indexes: tuple[tuple[str, ...], ...] = ()
    default_rows: int = 0


def _ts(spread_days: int = 700) -> str:
    # Deterministic timestamp from the sequence number.
    return f"TIMESTAMPADD(SECOND, CRC32(CONCAT(k, 'ts', s)) % ({spread_days} * 86400), '{_BASE_TS}')"


def _date_or_unset(tag: str, unset_every: int = 5) -> str:
    # OpenDental stores "no date" as 0001-01-01.
    return (
        f"IF(CRC32(CONCAT(k, '{tag}', s)) % {unset_every} = 0, '0001-01-01', "
        f"DATE_ADD('2015-01-01', INTERVAL CRC32(CONCAT(k, '{tag}d', s)) % 4000 DAY))"
    )


def _money(tag: str) -> str:
    return f"ROUND((CRC32(CONCAT(k, '{tag}', s)) % 200000) / 100, 2)"


def _pick(tag: str, n: int) -> str:
    return f"CRC32(CONCAT(k, '{tag}', s)) % {n}"


def _fk(tag: str, n: int) -> str:
    return f"1 + CRC32(CONCAT(k, '{tag}', s)) % {n}"


def _text(tag: str, words: list[str]) -> str:
    # Backslashes are escapes inside MariaDB string literals: double them so they are stored.
    items = ", ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words)
    return f"ELT(1 + CRC32(CONCAT(k, '{tag}', s)) % {len(words)}, {items})"


_FIRST = [
    "Anna",
    "Björn",
    "Chloé",
    "David",
    "Émile",
    "Fatima",
    "Günter",
    "Hana",
    "Igor",
    "José",
    "Keiko",
    "Liam",
    "Zoë",
    "Åsa",
    "李",
    "Ngozi",
]
_LAST = [
    "Smith",
    "Müller",
    "García",
    "O'Brien",
    "Nguyen",
    "Kowalski",
    "Dubois",
    "Rossi",
    "Yamada",
    "Søren",
    "Ivanova",
    "Brown",
]
_NOTES = [
    "",
    "Pt called to confirm.",
    "Left voicemail",
    "Insurance verified\tOK",
    "Line one\nLine two",
    "Back\\slash path C:\\OD",
    "Prefers morning",
    "Allergic to latex",
    "Needs pre-med",
]


def _core_specs() -> list[TableSpec]:
    patient = TableSpec(
        "patient",
        [
            ("PatNum", "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            ("LName", "varchar(100) NOT NULL DEFAULT ''", _text("ln", _LAST)),
            ("FName", "varchar(100) NOT NULL DEFAULT ''", _text("fn", _FIRST)),
            ("MiddleI", "varchar(100) NOT NULL DEFAULT ''", "''"),
            ("Preferred", "varchar(100) NOT NULL DEFAULT ''", "IF(s % 4 = 0, 'Pref', '')"),
            ("PatStatus", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("ps", 6)),
            ("Gender", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("g", 3)),
            ("Position", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("po", 5)),
            ("Birthdate", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("bd", 9)),
            ("SSN", "varchar(100) NOT NULL DEFAULT ''", "LPAD(CRC32(CONCAT(k,'ssn',s)) % 1000000000, 9, '0')"),
            ("Address", "varchar(100) NOT NULL DEFAULT ''", "CONCAT(s % 9000 + 1, ' Main St')"),
            (
                "City",
                "varchar(100) NOT NULL DEFAULT ''",
                _text("city", ["Portland", "Salem", "Zürich", "Montréal", "Bend"]),
            ),
            ("State", "varchar(100) NOT NULL DEFAULT ''", _text("st", ["OR", "WA", "CA", "ID"])),
            ("Zip", "varchar(100) NOT NULL DEFAULT ''", "LPAD(s % 99999, 5, '0')"),
            ("HmPhone", "varchar(30) NOT NULL DEFAULT ''", "CONCAT('(503)555-', LPAD(s % 10000, 4, '0'))"),
            ("Email", "varchar(100) NOT NULL DEFAULT ''", "IF(s % 3 = 0, '', CONCAT('pt', s, '@example.com'))"),
            ("EstBalance", "double NOT NULL DEFAULT 0", _money("eb")),
            ("PriProv", "bigint(20) NOT NULL DEFAULT 0", _fk("pp", 12)),
            ("BillingType", "bigint(20) NOT NULL DEFAULT 0", _fk("bt", 30)),
            ("Guarantor", "bigint(20) NOT NULL DEFAULT 0", "s - (s % 3)"),
            ("FamFinUrgNote", "text", _text("ffn", _NOTES)),
            ("ClinicNum", "bigint(20) NOT NULL DEFAULT 0", _pick("cl", 4)),
            ("DateFirstVisit", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("dfv")),
            ("PreferContactMethod", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("pcm", 7)),
            ("Premed", "tinyint(1) NOT NULL DEFAULT 0", _pick("pm", 2)),
            ("DateTStamp", _DSTAMP[len("`DateTStamp` ") :], _ts()),
            ("SecDateEntry", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("sde", 50)),
        ],
        ["PatNum"],
        "DateTStamp",
        (("LName", "FName"), ("Guarantor",)),
        2000,
    )
    appointment = TableSpec(
        "appointment",
        [
            ("AptNum", "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("AptStatus", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("as", 7)),
            ("Pattern", "varchar(255) NOT NULL DEFAULT ''", "REPEAT('X', 1 + s % 8)"),
            ("Confirmed", "bigint(20) NOT NULL DEFAULT 0", _fk("cf", 20)),
            ("Op", "bigint(20) NOT NULL DEFAULT 0", _fk("op", 8)),
            ("Note", "text", _text("n", _NOTES)),
            ("ProvNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pv", 12)),
            ("AptDateTime", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts(900)),
            ("IsNewPatient", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("np", 2)),
            ("ProcDescript", "mediumtext", _text("pd", ["PA, BWX", "Pro", "Comp Ex", "Crown #3", ""])),
            ("ClinicNum", "bigint(20) NOT NULL DEFAULT 0", _pick("cl", 4)),
            ("DateTimeArrived", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", "'0001-01-01 00:00:00'"),
            ("DateTStamp", _DSTAMP[len("`DateTStamp` ") :], _ts()),
            ("SecDateTEntry", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts(800)),
        ],
        ["AptNum"],
        "DateTStamp",
        (("PatNum",), ("AptDateTime",)),
        3000,
    )
    # 36 columns, as OpenDental's procedurelog.
    procedurelog = TableSpec(
        "procedurelog",
        [
            ("ProcNum", "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("AptNum", "bigint(20) NOT NULL DEFAULT 0", _fk("apt", 3000)),
            ("OldCode", "varchar(15) NOT NULL DEFAULT ''", "''"),
            ("ProcDate", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("pdt", 40)),
            ("ProcFee", "double NOT NULL DEFAULT 0", _money("fee")),
            ("Surf", "varchar(10) NOT NULL DEFAULT ''", _text("sf", ["", "MOD", "O", "DL", "B"])),
            ("ToothNum", "varchar(2) NOT NULL DEFAULT ''", "IF(s % 3 = 0, '', 1 + s % 32)"),
            ("ToothRange", "varchar(100) NOT NULL DEFAULT ''", "''"),
            ("Priority", "bigint(20) NOT NULL DEFAULT 0", _pick("pr", 5)),
            ("ProcStatus", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("pst", 8)),
            ("ProvNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pv", 12)),
            ("Dx", "bigint(20) NOT NULL DEFAULT 0", _pick("dx", 10)),
            ("PlannedAptNum", "bigint(20) NOT NULL DEFAULT 0", "0"),
            ("PlaceService", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("pls", 4)),
            ("Prosthesis", "char(1) NOT NULL DEFAULT ''", _text("pro", ["", "I", "R"])),
            ("DateOriginalProsth", "date NOT NULL DEFAULT '0001-01-01'", "'0001-01-01'"),
            ("ClaimNote", "varchar(80) NOT NULL DEFAULT ''", _text("cn", ["", "see xray", "narrative\tattached"])),
            ("DateEntryC", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("dec", 30)),
            ("ClinicNum", "bigint(20) NOT NULL DEFAULT 0", _pick("cl", 4)),
            ("MedicalCode", "varchar(255) NOT NULL DEFAULT ''", "''"),
            ("DiagnosticCode", "varchar(255) NOT NULL DEFAULT ''", _text("dc", ["", "K02.9", "K05.10"])),
            ("IsPrincDiag", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("ipd", 2)),
            ("ProcNumLab", "bigint(20) NOT NULL DEFAULT 0", "0"),
            ("BillingTypeOne", "bigint(20) NOT NULL DEFAULT 0", "0"),
            ("BillingTypeTwo", "bigint(20) NOT NULL DEFAULT 0", "0"),
            ("CodeNum", "bigint(20) NOT NULL DEFAULT 0", _fk("code", 600)),
            ("CodeMod1", "char(2) NOT NULL DEFAULT ''", "''"),
            ("UnitQty", "int(11) NOT NULL DEFAULT 0", "1 + s % 3"),
            ("BaseUnits", "int(11) NOT NULL DEFAULT 0", "0"),
            ("StartTime", "int(11) NOT NULL DEFAULT 0", "0"),
            ("StopTime", "int(11) NOT NULL DEFAULT 0", "0"),
            ("DateTP", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("dtp", 3)),
            ("Discount", "double NOT NULL DEFAULT 0", "IF(s % 11 = 0, " + _money("disc") + " / 10, 0)"),
            ("DateTStamp", _DSTAMP[len("`DateTStamp` ") :], _ts()),
            ("SecDateEntry", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("sde", 60)),
        ],
        ["ProcNum"],
        "DateTStamp",
        (("PatNum",), ("AptNum",), ("DateTStamp",)),
        8000,
    )
    commlog = TableSpec(
        "commlog",
        [
            ("CommlogNum", "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("CommDateTime", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts()),
            ("CommType", "bigint(20) NOT NULL DEFAULT 0", _fk("ct", 10)),
            # OpenDental stores notes as utf8mb4 on newer versions: emoji arrive in texts.
            (
                "Note",
                "text CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
                _text("n", [*_NOTES, "Thanks! 😀", "📞 call back"]),
            ),
            ("Mode_", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("m", 6)),
            ("SentOrReceived", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("sr", 3)),
            ("UserNum", "bigint(20) NOT NULL DEFAULT 0", _fk("u", 15)),
            ("DateTStamp", _DSTAMP[len("`DateTStamp` ") :], _ts()),
            ("DateTEntry", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts(650)),
        ],
        ["CommlogNum"],
        "DateTStamp",
        (("PatNum",),),
        2500,
    )
    document = TableSpec(
        "document",
        [
            ("DocNum", "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            ("Description", "varchar(255) NOT NULL DEFAULT ''", _text("d", ["Xray", "Consent form", "Photo"])),
            ("DateCreated", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts()),
            ("DocCategory", "bigint(20) NOT NULL DEFAULT 0", _fk("dcat", 8)),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("FileName", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('Doc', s, '.jpg')"),
            ("ImgType", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("it", 5)),
            ("Note", "mediumtext", _text("n", _NOTES)),
            ("Signature", "text", "''"),
            ("Thumbnail", "blob", "IF(s % 5 = 0, NULL, UNHEX(SHA2(CONCAT(k, 'thumb', s), 256)))"),
            ("RawBase64", "mediumtext", "IF(s % 7 = 0, TO_BASE64(UNHEX(MD5(s))), '')"),
            ("DateTStamp", _DSTAMP[len("`DateTStamp` ") :], _ts()),
        ],
        ["DocNum"],
        "DateTStamp",
        (("PatNum",),),
        600,
    )

    def _secedit_table(name: str, key: str, extra: list[tuple[str, str, str]], rows: int) -> TableSpec:
        cols = [
            (key, "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            *extra,
            ("SecUserNumEntry", "bigint(20) NOT NULL DEFAULT 0", _fk("sue", 15)),
            ("SecDateTEntry", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts(650)),
            ("SecDateTEdit", _SECEDIT[len("`SecDateTEdit` ") :], _ts()),
        ]
        return TableSpec(name, cols, [key], "SecDateTEdit", (("SecDateTEdit",),), rows)

    payment = _secedit_table(
        "payment",
        "PayNum",
        [
            ("PayType", "bigint(20) NOT NULL DEFAULT 0", _fk("pt", 10)),
            ("PayDate", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("pd", 50)),
            ("PayAmt", "double NOT NULL DEFAULT 0", _money("amt")),
            ("CheckNum", "varchar(25) NOT NULL DEFAULT ''", "IF(s % 2 = 0, '', s * 7)"),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("PayNote", "text", _text("pn", _NOTES)),
            ("ClinicNum", "bigint(20) NOT NULL DEFAULT 0", _pick("cl", 4)),
            ("PaymentSource", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("ps", 4)),
        ],
        1500,
    )
    paysplit = _secedit_table(
        "paysplit",
        "SplitNum",
        [
            ("SplitAmt", "double NOT NULL DEFAULT 0", _money("sa")),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("ProcDate", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("pd")),
            ("PayNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pay", 1500)),
            ("ProvNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pv", 12)),
            ("DatePay", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("dp", 40)),
            ("ProcNum", "bigint(20) NOT NULL DEFAULT 0", _fk("proc", 8000)),
        ],
        2000,
    )
    adjustment = _secedit_table(
        "adjustment",
        "AdjNum",
        [
            ("AdjDate", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("ad", 40)),
            ("AdjAmt", "double NOT NULL DEFAULT 0", "-" + _money("aa")),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("AdjType", "bigint(20) NOT NULL DEFAULT 0", _fk("at", 12)),
            ("AdjNote", "text", _text("an", _NOTES)),
        ],
        500,
    )
    claim = _secedit_table(
        "claim",
        "ClaimNum",
        [
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("DateService", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("ds", 40)),
            ("DateSent", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("dsn", 4)),
            ("ClaimStatus", "char(1) NOT NULL DEFAULT ''", _text("cs", ["U", "H", "W", "S", "R"])),
            ("ClaimFee", "double NOT NULL DEFAULT 0", _money("cf")),
            ("InsPayAmt", "double NOT NULL DEFAULT 0", _money("ipa")),
            ("PlanNum", "bigint(20) NOT NULL DEFAULT 0", _fk("plan", 40)),
            ("ClaimType", "varchar(255) NOT NULL DEFAULT ''", _text("ct", ["P", "S", "PreAuth"])),
        ],
        800,
    )
    claimproc = _secedit_table(
        "claimproc",
        "ClaimProcNum",
        [
            ("ProcNum", "bigint(20) NOT NULL DEFAULT 0", _fk("proc", 8000)),
            ("ClaimNum", "bigint(20) NOT NULL DEFAULT 0", _fk("claim", 800)),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _fk("pat", 2000)),
            ("FeeBilled", "double NOT NULL DEFAULT 0", _money("fb")),
            ("InsPayEst", "double NOT NULL DEFAULT 0", _money("ipe")),
            ("InsPayAmt", "double NOT NULL DEFAULT 0", _money("ipa")),
            ("Status", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("st", 9)),
            ("DateCP", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("dcp", 30)),
            ("ProcDate", "date NOT NULL DEFAULT '0001-01-01'", _date_or_unset("pd", 30)),
        ],
        2500,
    )
    securitylog = TableSpec(
        "securitylog",
        [
            ("SecurityLogNum", "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            ("PermType", "smallint(6) NOT NULL DEFAULT 0", _pick("pt", 200)),
            ("UserNum", "bigint(20) NOT NULL DEFAULT 0", _fk("u", 15)),
            (
                "LogDateTime",
                "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'",
                f"TIMESTAMPADD(SECOND, s * 7, '{_BASE_TS}')",
            ),
            ("LogText", "text", "CONCAT('Patient edited: ', s, IF(s % 13 = 0, ' note\\ttab', ''))"),
            ("PatNum", "bigint(20) NOT NULL DEFAULT 0", _pick("pat", 2000)),
            ("CompName", "varchar(255) NOT NULL DEFAULT ''", _text("cn", ["FRONTDESK1", "OP-3", "SERVER"])),
            ("FKey", "bigint(20) NOT NULL DEFAULT 0", "s % 5000"),
            ("LogSource", "tinyint(4) NOT NULL DEFAULT 0", _pick("ls", 5)),
            ("DefNum", "bigint(20) NOT NULL DEFAULT 0", "0"),
            ("DefNumError", "bigint(20) NOT NULL DEFAULT 0", "0"),
            ("DateTPrevious", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", "'0001-01-01 00:00:00'"),
        ],
        ["SecurityLogNum"],
        None,
        (("PatNum",), ("LogDateTime",)),
        10000,
    )
    definition = TableSpec(
        "definition",
        [
            ("DefNum", "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
            ("Category", "tinyint(3) unsigned NOT NULL DEFAULT 0", "s % 40"),
            ("ItemOrder", "smallint(5) unsigned NOT NULL DEFAULT 0", "s % 17"),
            ("ItemName", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('Def ', s)"),
            ("ItemValue", "varchar(255) NOT NULL DEFAULT ''", "''"),
            ("ItemColor", "int(11) NOT NULL DEFAULT 0", "-(s * 65793)"),
            ("IsHidden", "tinyint(3) unsigned NOT NULL DEFAULT 0", "s % 9 = 0"),
        ],
        ["DefNum"],
        None,
        (),
        150,
    )

    def _lookup(
        name: str, key: str, extra: list[tuple[str, str, str]], rows: int, change: str | None = None
    ) -> TableSpec:
        cols = [(key, "bigint(20) NOT NULL AUTO_INCREMENT", "s"), *extra]
        if change == "DateTStamp":
            cols.append(("DateTStamp", _DSTAMP[len("`DateTStamp` ") :], _ts()))
        return TableSpec(name, cols, [key], change, (), rows)

    provider = _lookup(
        "provider",
        "ProvNum",
        [
            ("Abbr", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('DOC', s)"),
            ("LName", "varchar(100) NOT NULL DEFAULT ''", _text("ln", _LAST)),
            ("FName", "varchar(100) NOT NULL DEFAULT ''", _text("fn", _FIRST)),
            ("IsSecondary", "tinyint(3) unsigned NOT NULL DEFAULT 0", "s % 3 = 0"),
            ("IsHidden", "tinyint(3) unsigned NOT NULL DEFAULT 0", "0"),
        ],
        12,
        "DateTStamp",
    )
    clinic = _lookup(
        "clinic",
        "ClinicNum",
        [
            ("Description", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('Clinic ', s)"),
            ("Address", "varchar(255) NOT NULL DEFAULT ''", "CONCAT(s, ' Oak Ave')"),
            ("IsHidden", "tinyint(4) NOT NULL DEFAULT 0", "0"),
        ],
        4,
    )
    carrier = _lookup(
        "carrier",
        "CarrierNum",
        [
            ("CarrierName", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('Carrier ', s)"),
            ("ElectID", "varchar(255) NOT NULL DEFAULT ''", "LPAD(s, 5, '6')"),
        ],
        25,
        "DateTStamp",
    )
    insplan = _lookup(
        "insplan",
        "PlanNum",
        [
            ("GroupName", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('Group ', s)"),
            ("CarrierNum", "bigint(20) NOT NULL DEFAULT 0", _fk("car", 25)),
            ("PlanType", "varchar(255) NOT NULL DEFAULT ''", _text("pt", ["", "p", "f", "c"])),
        ],
        40,
    )
    operatory = _lookup(
        "operatory",
        "OperatoryNum",
        [
            ("OpName", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('Op ', s)"),
            ("ItemOrder", "smallint(5) unsigned NOT NULL DEFAULT 0", "s"),
        ],
        8,
    )
    userod = _lookup(
        "userod",
        "UserNum",
        [
            ("UserName", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('user', s)"),
            # A hash, never a password; kept to mirror OpenDental's shape.
            ("PasswordHash", "varchar(255) NOT NULL DEFAULT ''", "SHA2(CONCAT('salt', s), 256)"),
            ("IsHidden", "tinyint(4) NOT NULL DEFAULT 0", "0"),
        ],
        15,
    )
    procedurecode = _lookup(
        "procedurecode",
        "CodeNum",
        [
            (
                "ProcCode",
                "varchar(15) CHARACTER SET utf8mb3 COLLATE utf8mb3_bin NOT NULL DEFAULT ''",
                "CONCAT('D', LPAD(s, 4, '0'))",
            ),
            ("Descript", "varchar(255) NOT NULL DEFAULT ''", "CONCAT('Procedure ', s)"),
            ("AbbrDesc", "varchar(50) NOT NULL DEFAULT ''", "CONCAT('P', s)"),
            ("ProcTime", "varchar(24) NOT NULL DEFAULT ''", "'/X/'"),
        ],
        600,
        "DateTStamp",
    )
    # Composite key (OpenDental link tables) and a table with no primary key.
    patplan = TableSpec(
        "patplan",
        [
            ("PatNum", "bigint(20) NOT NULL", "s"),
            ("Ordinal", "tinyint(3) unsigned NOT NULL", "1 + s % 2"),
            ("InsSubNum", "bigint(20) NOT NULL DEFAULT 0", _fk("sub", 40)),
            ("Relationship", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("rel", 5)),
            ("SecDateTEdit", _SECEDIT[len("`SecDateTEdit` ") :], _ts()),
        ],
        ["PatNum", "Ordinal"],
        "SecDateTEdit",
        (),
        900,
    )
    entrylog = TableSpec(
        "entrylog",
        [
            ("UserNum", "bigint(20) NOT NULL DEFAULT 0", _fk("u", 15)),
            ("FKeyType", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("fk", 3)),
            ("FKey", "bigint(20) NOT NULL DEFAULT 0", "s"),
            ("LogSource", "tinyint(3) unsigned NOT NULL DEFAULT 0", _pick("ls", 4)),
            ("EntryDateTime", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts()),
        ],
        [],
        None,
        (("FKey",),),
        300,
    )
    return [
        patient,
        appointment,
        procedurelog,
        commlog,
        document,
        payment,
        paysplit,
        adjustment,
        claim,
        claimproc,
        securitylog,
        definition,
        provider,
        clinic,
        carrier,
        insplan,
        operatory,
        userod,
        procedurecode,
        patplan,
        entrylog,
    ]


# Every value class the copy paths must keep exactly, one row per case.
EDGECASE_TABLE = "edgecase"
_EDGECASE_DDL = f"""
CREATE TABLE `{EDGECASE_TABLE}` (
  `EdgeCaseNum` bigint(20) NOT NULL AUTO_INCREMENT,
  `Label` varchar(64) NOT NULL DEFAULT '',
  `DateCol` date NOT NULL DEFAULT '0001-01-01',
  `DateTimeCol` datetime NOT NULL DEFAULT '0001-01-01 00:00:00',
  `TimeCol` time DEFAULT NULL,
  `TextMb3` varchar(255) DEFAULT NULL,
  `TextMb4` text CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci DEFAULT NULL,
  `LongText` longtext DEFAULT NULL,
  `BlobCol` longblob DEFAULT NULL,
  `VarBin` varbinary(64) DEFAULT NULL,
  `CharCol` char(8) DEFAULT NULL,
  `UBig` bigint(20) unsigned DEFAULT NULL,
  `UInt` int(10) unsigned DEFAULT NULL,
  `USmall` smallint(5) unsigned DEFAULT NULL,
  `Signed` int(11) DEFAULT NULL,
  `Flag` tinyint(1) DEFAULT NULL,
  `Dbl` double DEFAULT NULL,
  `Flt` float DEFAULT NULL,
  `Dec` decimal(12,4) DEFAULT NULL,
  `EnumCol` enum('a','b','c d') DEFAULT NULL,
  `SetCol` set('x','y','z') DEFAULT NULL,
  `JsonCol` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`JsonCol`)),
  `Bit1` bit(1) DEFAULT NULL,
  `Bit10` bit(10) DEFAULT NULL,
  `YearCol` year(4) DEFAULT NULL,
  `DateTStamp` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (`EdgeCaseNum`)
) {_TABLE_OPTIONS}
"""
_EDGECASE_COLUMNS = ", ".join(
    quote_ident(c, "mysql")
    for c in (
        "Label",
        "DateCol",
        "DateTimeCol",
        "TimeCol",
        "TextMb3",
        "TextMb4",
        "LongText",
        "BlobCol",
        "VarBin",
        "CharCol",
        "UBig",
        "UInt",
        "USmall",
        "Signed",
        "Flag",
        "Dbl",
        "Flt",
        "Dec",
        "EnumCol",
        "SetCol",
        "JsonCol",
        "Bit1",
        "Bit10",
        "YearCol",
        "DateTStamp",
    )
)
_ALL_BYTES = "UNHEX('" + bytes(range(256)).hex() + "')"
_EDGECASE_ROWS = [
    # label, date, datetime, time, mb3, mb4, longtext, blob, varbin, char, ubig, uint, usmall, signed, flag,
    # dbl, flt, dec, enum, set, json, bit1, bit10, year
    (
        "zero dates",
        "'0000-00-00'",
        "'0000-00-00 00:00:00'",
        "'00:00:00'",
        "'plain'",
        "'plain'",
        "''",
        "''",
        "''",
        "'a'",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "'a'",
        "''",
        "'{}'",
        "b'0'",
        "b'0'",
        "2000",
    ),
    (
        "unset dates 0001-01-01",
        "'0001-01-01'",
        "'0001-01-01 00:00:00'",
        "'-838:59:59'",
        "'Zoë Ångström — café, 日本語 李'",
        "'emoji 😀👍🏽 and 𝄞'",
        "'x'",
        _ALL_BYTES,
        "UNHEX('00FF00')",
        "'  pad'",
        "18446744073709551615",
        "4294967295",
        "65535",
        "-2147483648",
        "1",
        "1.7976931348623157e308",
        "3.4e38",
        "99999999.9999",
        "'c d'",
        "'x,z'",
        '\'{"k": [1, 2.5, null, "é"]}\'',
        "b'1'",
        "b'1111111111'",
        "2155",
    ),
    (
        "NUL and escapes",
        "'2024-02-29'",
        "'2024-02-29 23:59:59'",
        "'123:45:06'",
        "CONCAT('a', CHAR(0), 'b')",
        "CONCAT('tab\\t nl\\n cr\\r bs\\\\ ', CHAR(0), ' end')",
        "REPEAT('long text ', 2000)",
        "UNHEX('00')",
        "UNHEX('5C4E')",
        "'\\\\N'",
        "1",
        "1",
        "1",
        "-1",
        "0",
        "-2.2250738585072014e-308",
        "-1.17549e-38",
        "-0.0001",
        "'b'",
        "'y'",
        "'[]'",
        "b'0'",
        "b'0000000001'",
        "1901",
    ),
    (
        "NULLs and empty strings",
        "'2000-01-01'",
        "'1970-01-01 00:00:01'",
        "NULL",
        "''",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "''",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
    ),
    (
        "string NULL and backslash N",
        "'1999-12-31'",
        "'2038-01-19 03:14:07'",
        "'-00:00:01'",
        "'NULL'",
        "'\\\\N'",
        "'\\\\'",
        "UNHEX('0A0D09')",
        "''",
        "'NULL'",
        "9223372036854775808",
        "2147483648",
        "32768",
        "2147483647",
        "1",
        "0.1",
        "0.1",
        "0.5",
        "'a'",
        "'x,y,z'",
        "'\"text\"'",
        "b'1'",
        "b'1000000000'",
        "0",
    ),
]


def _specs_by_name() -> dict[str, TableSpec]:
    return {spec.name: spec for spec in _core_specs()}


def _create_table_sql(spec: TableSpec) -> str:
    cols = [f"  {quote_ident(n, 'mysql')} {ddl}" for n, ddl, _ in spec.columns]
    if spec.primary_key:
        cols.append(f"  PRIMARY KEY ({', '.join(quote_ident(c, 'mysql') for c in spec.primary_key)})")
    for idx in spec.indexes:
        name = "idx_" + "_".join(idx)
        cols.append(f"  KEY {quote_ident(name, 'mysql')} ({', '.join(quote_ident(c, 'mysql') for c in idx)})")
    return f"CREATE TABLE {quote_ident(spec.name, 'mysql')} (\n" + ",\n".join(cols) + f"\n) {_TABLE_OPTIONS}"


# Real OpenDental table names used for the many tiny tables of a full-size schema.
_FILLER_NAMES = """account accountingautopay alertitem allergy allergydef apikey appointmentrule appointmenttype
apptfield apptfielddef apptreminderrule apptview apptviewitem asapcomm autocode autocodecond autocodeitem automation
automationcondition autonote autonotecontrol benefit canadiannetwork cdcrec cdspermission centralconnection cert
chartview claimattach claimcondcodelog claimform claimformitem claimpayment claimsnapshot claimtracking claimvalcodelog
clearinghouse clinicerx clinicpref clockevent codesystem computer computerpref confirmationrequest connectiongroup
contact county covcat covspan cpt creditcard custrefentry custreference cvx dashboardar dashboardcell dashboardlayout
databasemaintenance dbmlog deflink deletedobject deposit dictcustom discountplan discountplansub disease diseasedef
displayfield displayreport dispsupply documentmisc drugmanufacturer drugunit dunning ebill eclinicalworks
educationalresource ehramendment ehraptobs ehrcareplan ehrlab ehrlabclinicalinfo ehrlabimage ehrlabnote ehrlabresult
ehrlabresultscopyto ehrlabspecimen ehrmeasure ehrmeasureevent ehrnotperformed ehrpatient ehrprovkey ehrquarterlykey
ehrsummaryccd ehrtrigger electid emailaddress emailattach emailautograph emailmessage emailmessageuid emailtemplate
employee employer encounter eobattach equipment erxlog eservicelog etrans etrans835 etrans835attach etransmessagetext
evaluation evaluationcriterion evaluationcriteriondef evaluationdef famaging familyhealth feesched feeschedgroup fee
fhircontactpoint fhirsubscription fielddeflink formpat formulary formularymed gradingscale gradingscaleitem
grouppermission guardian hcpcs hieclinic hiequeue histappointment hl7def hl7deffield hl7defmessage hl7defsegment hl7msg
hl7procattach icd10 icd9 imagingdevice installmentplan insbluebook insbluebooklog insbluebookrule insfilingcode
insfilingcodesubtype inssub insverify insverifyhist intervention journalentry labcase laboratory labpanel labresult
labturnaround language languageforeign languagepat letter lettermerge lettermergefield limitedbetafeature loginattempt
loinc maparea medicalorder medication medicationpat medlab medlabfacattach medlabfacility medlabresult medlabspecimen
mobileappdevice mount mountdef mountitem mountitemdef oidexternal oidinternal orionproc orthochart orthocharttab
orthocharttablink orthocase orthoplanlink orthoproclink orthorx orthoschedule patfield patfielddef patientlink
patientnote patientrace patrestriction payconnectresponseweb payortype payperiod payplan payplancharge payplanlink
perioexam periomeasure pharmacy pharmclinic phonenumber plannedappt popup preference printer procapptcolor procbutton
procbuttonitem procbuttonquick proccodenote procgroupitem procmultivisit procnote proctp programproperty program
promotion providerclinic providerclinicgroup providercliniclink providererx providerident question questiondef
quickpastecat quickpastenote reactivation recall recalltrigger recalltype reconcile refattach referral
referralcliniclink registrationkey reminderrule repeatcharge replicationserver reqneeded reqstudent requiredfield
requiredfieldcondition reseller resellerservice rxalert rxdef rxnorm rxpat schedule scheduledprocess scheduleop
schoolclass schoolcourse screen screengroup screenpat sheet sheetdef sheetfield sheetfielddef sigbutdef sigelementdef
sigmessage signalod site smsblockphone smsfrommobile smsphone smstomobile snomed sop stateabbr statement statementprod
stmtlink substitutionlink supplier supply supplyneeded supplyorder supplyorderitem task taskancestor taskattachment
tasklist tasknote tasksubscription taskunread terminalactive timeadjust timecardrule toolbutitem toothgridcell
toothgridcol toothgriddef toothinitial transaction treatplan treatplanattach treatplanparam tsitranslog ucum
updatehistory userclinic usergroup usergroupattach userodapptview userodpref userquery userweb utm vaccinedef
vaccineobs vaccinepat vitalsign webschedrecall wikilist wikilisthist wikilistheaderwidth wikipage wikipagehist
xchargetransaction xwebresponse zipcode""".split()  # noqa: SIM905 - 340 names read better as text


def _filler_spec(index: int) -> TableSpec:
    if index < len(_FILLER_NAMES):
        name = _FILLER_NAMES[index]
    else:
        name = f"{_FILLER_NAMES[index % len(_FILLER_NAMES)]}{index // len(_FILLER_NAMES) + 1}"
    key = name[:1].upper() + name[1:] + "Num"
    cols = [
        (key, "bigint(20) NOT NULL AUTO_INCREMENT", "s"),
        ("Description", "varchar(255) NOT NULL DEFAULT ''", f"CONCAT('{name} ', s)"),
        ("ItemOrder", "int(11) NOT NULL DEFAULT 0", "s"),
        ("IsHidden", "tinyint(4) NOT NULL DEFAULT 0", "s % 7 = 0"),
        ("FKeyNum", "bigint(20) NOT NULL DEFAULT 0", _pick("fk", 100)),
    ]
    change = None
    # A third of the small tables carry DateTStamp, as in OpenDental.
    if index % 3 == 0:
        cols.append(("DateTStamp", _DSTAMP[len("`DateTStamp` ") :], _ts()))
        change = "DateTStamp"
    elif index % 3 == 1:
        cols.append(("DateTEntry", "datetime NOT NULL DEFAULT '0001-01-01 00:00:00'", _ts()))
    return TableSpec(name, cols, [key], change, (), index % _TINY_TABLE_ROWS)


def _connect(server: MySQLServer) -> Any:
    conn = server.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"SET SESSION sql_mode='{_LEGACY_SQL_MODE}'")
    return conn


def _all_specs(filler_tables: int) -> list[TableSpec]:
    return _core_specs() + [_filler_spec(i) for i in range(filler_tables)]


def create_schema(server: MySQLServer, *, filler_tables: int = 0, edge_cases: bool = True) -> list[str]:
    """Create the core OpenDental tables (plus ``filler_tables`` tiny ones); return the table names."""
    conn = _connect(server)
    try:
        with conn.cursor() as cur:
            return _create_tables(cur, _all_specs(filler_tables), edge_cases)
    finally:
        conn.close()


def _create_tables(cur: Any, specs: list[TableSpec], edge_cases: bool) -> list[str]:
    names = [spec.name for spec in specs] + ([EDGECASE_TABLE] if edge_cases else [])
    if len(set(names)) != len(names):
        raise ValueError("generator: duplicate table names in the generated schema")
    # One DROP for all: a 450-table source is mostly round trips otherwise.
    cur.execute("DROP TABLE IF EXISTS " + ", ".join(quote_ident(name, "mysql") for name in names))
    for spec in specs:
        cur.execute(_create_table_sql(spec))
    if edge_cases:
        cur.execute(_EDGECASE_DDL)
    return names


def _insert_select_sql(spec: TableSpec, rows: int, seed: int, start: int, fixed_timestamp: str | None) -> str:
    names, exprs = [], []
    for name, _ddl, expr in spec.columns:
        names.append(quote_ident(name, "mysql"))
        if fixed_timestamp is not None and name == spec.change_column:
            expr = f"'{fixed_timestamp}'"  # already validated by _checked_timestamp
        exprs.append(expr)
    # `s` is the row number (and the key for *Num tables), `k` the seed: both are
    # columns of the derived table, so every expression is a pure function of them.
    return (
        f"INSERT INTO {quote_ident(spec.name, 'mysql')} ({', '.join(names)}) "
        f"SELECT {', '.join(exprs)} FROM (SELECT seq + {int(start) - 1} AS s, {int(seed)} AS k "
        f"FROM seq_1_to_{int(rows)}) AS g"
    )


def _checked_timestamp(value: str) -> str:
    """``value`` as 'YYYY-MM-DD HH:MM:SS' inside MySQL's TIMESTAMP range, else ValueError."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"generator: fixed_timestamp {value!r} is not 'YYYY-MM-DD HH:MM:SS'") from None
    if parsed.tzinfo is not None or not (datetime(1970, 1, 1, 0, 0, 1) <= parsed <= datetime(2038, 1, 19, 3, 14, 7)):
        raise ValueError(f"generator: fixed_timestamp {value!r} is outside the TIMESTAMP range (UTC, no offset)")
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def fill_table(
    server: MySQLServer,
    table: str,
    rows: int,
    *,
    seed: int = 42,
    start: int | None = None,
    fixed_timestamp: str | None = None,
    spec: TableSpec | None = None,
) -> int:
    """Append ``rows`` generated rows to ``table`` (keys from ``start``, default max+1); return rows added."""
    if rows <= 0:
        return 0
    spec = spec or _specs_by_name().get(table)
    if spec is None:
        raise ValueError(f"generator: no spec for table {table!r} (core tables: {', '.join(_specs_by_name())})")
    if fixed_timestamp is not None:
        if spec.change_column is None:
            raise ValueError(f"generator: table {table!r} has no change column for fixed_timestamp")
        fixed_timestamp = _checked_timestamp(fixed_timestamp)
    conn = _connect(server)
    try:
        with conn.cursor() as cur:
            return _fill(cur, spec, rows, seed=seed, start=start, fixed_timestamp=fixed_timestamp)
    finally:
        conn.close()


def _fill(cur: Any, spec: TableSpec, rows: int, *, seed: int, start: int | None, fixed_timestamp: str | None) -> int:
    if rows <= 0:
        return 0
    if start is None:
        first = spec.primary_key[0] if spec.primary_key else spec.columns[0][0]
        cur.execute(f"SELECT COALESCE(MAX({quote_ident(first, 'mysql')}), 0) FROM {quote_ident(spec.name, 'mysql')}")
        start = int(cur.fetchone()[0]) + 1
    cur.execute(_insert_select_sql(spec, rows, seed, start, fixed_timestamp))
    return int(cur.rowcount)


def _fill_edgecases(conn: Any) -> None:
    with conn.cursor() as cur:
        for i, row in enumerate(_EDGECASE_ROWS):
            label, *values = row
            stamp = f"'2024-06-0{i + 1} 12:00:00'"
            cur.execute(
                f"INSERT INTO `{EDGECASE_TABLE}` ({_EDGECASE_COLUMNS}) VALUES ('{label}', {', '.join(values)}, {stamp})"
            )


def seed(
    server: MySQLServer,
    *,
    rows: dict[str, int] | None = None,
    scale: float = 1.0,
    seed: int = 42,
    filler_tables: int = 0,
    edge_cases: bool = True,
) -> dict[str, int]:
    """Create the schema and fill every table deterministically; return rows per table.

    Row counts: ``rows[table]`` when given, else the table's default times
    ``scale``; tiny tables (23 rows or fewer: lookups, filler) keep their size.
    """
    specs = _all_specs(filler_tables)
    unknown = sorted(set(rows or {}) - {spec.name for spec in specs})
    if unknown:
        raise ValueError(f"generator.seed: rows given for unknown table(s) {', '.join(unknown)}")
    if scale < 0 or any(n < 0 for n in (rows or {}).values()):
        raise ValueError("generator.seed: scale and row counts must not be negative")
    counts: dict[str, int] = {}
    # One connection for the whole seed: connecting costs more than filling a tiny table.
    conn = _connect(server)
    try:
        with conn.cursor() as cur:
            _create_tables(cur, specs, edge_cases)
            for spec in specs:
                if rows and spec.name in rows:
                    n = rows[spec.name]
                elif spec.default_rows > _TINY_TABLE_ROWS:
                    n = round(spec.default_rows * scale)
                else:
                    n = spec.default_rows
                counts[spec.name] = _fill(cur, spec, n, seed=seed, start=1, fixed_timestamp=None)
        if edge_cases:
            _fill_edgecases(conn)
            counts[EDGECASE_TABLE] = len(_EDGECASE_ROWS)
    finally:
        conn.close()
    return counts


def _mutable_column(spec: TableSpec) -> tuple[str, str] | None:
    """The first non-key text or money column and how an update changes it."""
    for name, ddl, _expr in spec.columns:
        if name in spec.primary_key or name == spec.change_column:
            continue
        if ddl.startswith(("varchar", "text", "mediumtext")):
            return name, "text"
        if ddl.startswith("double"):
            return name, "money"
    return None


def apply_changes(
    server: MySQLServer, table: str, *, inserts: int = 0, updates: int = 0, deletes: int = 0, seed: int = 7
) -> dict[str, list[int]]:
    """Insert, update and delete rows of a core table; return the affected keys.

    Deleted keys are every third key from the top; updated keys are spread
    over the rest of the table (never a deleted key); inserted keys continue
    after the previous maximum. Updated and inserted rows get a change-column
    value strictly after both the table's current maximum and NOW(), so an
    incremental copy sees them even within the same second as its last run.
    Returns ``{"inserted": [...], "updated": [...], "deleted": [...]}``.
    """
    spec = _specs_by_name().get(table)
    if spec is None:
        raise ValueError(f"generator.apply_changes: no spec for table {table!r}")
    if len(spec.primary_key) != 1:
        raise ValueError(f"generator.apply_changes: {table!r} needs a single-column key")
    key = quote_ident(spec.primary_key[0], "mysql")
    t = quote_ident(table, "mysql")
    conn = _connect(server)
    out: dict[str, list[int]] = {"inserted": [], "updated": [], "deleted": []}
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COALESCE(MAX({key}), 0) FROM {t}")
            max_key = int(cur.fetchone()[0])
            stamp = None
            if spec.change_column:
                cc = quote_ident(spec.change_column, "mysql")
                cur.execute(f"SELECT GREATEST(COALESCE(MAX({cc}), NOW()), NOW()) + INTERVAL 1 SECOND FROM {t}")
                stamp = str(cur.fetchone()[0])
            if deletes:
                cur.execute(f"SELECT {key} FROM {t} ORDER BY {key} DESC LIMIT %s", (deletes * 3,))
                keys = [int(r[0]) for r in cur.fetchall()][2::3][:deletes]
                if keys:
                    cur.execute(f"DELETE FROM {t} WHERE {key} IN ({', '.join(map(str, keys))})")
                out["deleted"] = keys
            if updates:
                out["updated"] = _update_rows(cur, spec, updates, seed, stamp)
            if inserts:
                _fill(cur, spec, inserts, seed=seed, start=max_key + 1, fixed_timestamp=stamp)
                out["inserted"] = list(range(max_key + 1, max_key + 1 + inserts))
    finally:
        conn.close()
    return out


def _update_rows(cur: Any, spec: TableSpec, updates: int, seed: int, stamp: str | None) -> list[int]:
    key = quote_ident(spec.primary_key[0], "mysql")
    t = quote_ident(spec.name, "mysql")
    cur.execute(f"SELECT COUNT(*) FROM {t}")
    step = max(1, int(cur.fetchone()[0]) // updates)
    cur.execute(f"SELECT {key} FROM {t} ORDER BY {key} LIMIT %s", (updates * step,))
    keys = [int(r[0]) for r in cur.fetchall()][::step][:updates]
    if not keys:
        return []
    assignments = []
    mutable = _mutable_column(spec)
    if mutable is not None:
        col = quote_ident(mutable[0], "mysql")
        # Text gets a marker naming the seed; money moves by a cent (always a real change).
        assignments.append(
            f"{col} = CONCAT('upd{int(seed)}-', {key})" if mutable[1] == "text" else f"{col} = {col} + 0.01"
        )
    if spec.change_column is not None:
        assignments.append(f"{quote_ident(spec.change_column, 'mysql')} = '{stamp}'")
    if not assignments:
        raise ValueError(f"generator.apply_changes: {spec.name!r} has no column an update can change")
    cur.execute(f"UPDATE {t} SET {', '.join(assignments)} WHERE {key} IN ({', '.join(map(str, keys))})")
    return keys


def create_procedurelog_like(server: MySQLServer, rows: int, *, table: str = "procedurelog", seed: int = 42) -> int:
    """A fresh procedurelog-shaped table (36 columns) of ``rows`` rows, for benches."""
    base = _specs_by_name()["procedurelog"]
    spec = TableSpec(table, base.columns, base.primary_key, base.change_column, base.indexes)
    conn = _connect(server)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table, 'mysql')}")
            cur.execute(_create_table_sql(spec))
    finally:
        conn.close()
    done = 0
    # Fill in slices so one statement never holds a huge temporary result.
    while done < rows:
        n = min(500_000, rows - done)
        fill_table(server, table, n, seed=seed, start=done + 1, spec=spec)
        done += n
    return done


def create_wide_source(server: MySQLServer, tables: int = 450, *, seed_value: int = 42) -> dict[str, int]:
    """The core tables plus tiny filler tables up to ``tables`` tables in all."""
    filler = max(0, tables - len(_core_specs()) - 1)
    return seed(server, filler_tables=filler, seed=seed_value, scale=0.25)


def table_names(filler_tables: int = 0, edge_cases: bool = True) -> list[str]:
    """The tables :func:`create_schema` makes with these arguments, in creation order."""
    return [spec.name for spec in _all_specs(filler_tables)] + ([EDGECASE_TABLE] if edge_cases else [])


def table_spec(table: str) -> TableSpec:
    """The generator's spec of one core table (columns, key, change column)."""
    return _specs_by_name()[table]
