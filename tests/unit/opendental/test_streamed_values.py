"""Client-side escaping of streamed values: the same bytes the server-side encodings produce, in bounded pieces."""

from __future__ import annotations

import re

from clinicflow.opendental import streamed_values
from clinicflow.opendental.streamed_values import RowLayout, carry_error, json_without_nul, keys_first_from


def test_load_data_escaping_round_trips_every_byte() -> None:
    layout = RowLayout("docs", True, [("Body", "load")], ["Id"])
    value = bytes(range(256)) * 3
    line = layout.line((b"7\tx", value, b"7"))
    head, body = line.split(b"\t", 2)[:2], line.split(b"\t", 2)[2]
    assert head == [b"7", b"x"]
    assert b"\n" not in body
    assert b"\0" not in body
    assert b"\t" not in body
    escapes = {b"t": b"\t", b"n": b"\n", b"0": b"\0", b"\\": b"\\"}
    assert re.sub(rb"\\(.)", lambda m: escapes[m.group(1)], body, flags=re.S) == value
    assert layout.line((b"1", None, b"1")) == b"1\t\\N"


def test_copy_pieces_are_bounded_and_match_whole_value_encoding() -> None:
    streamed_values.SLICE_BYTES = 64  # type: ignore[misc]
    try:
        layout = RowLayout("docs", False, [("Body", "bytea"), ("Txt", "text")])
        value = bytes(range(256)) * 2
        pieces = list(layout.pieces((value, b"a\tb\\c\r\n\0d" * 20)))
        assert max(len(p) for p in pieces) <= 2 * 64 + 3
        line = b"".join(pieces)
        body, text = line.split(b"\t")
        assert body == b"\\\\x" + value.hex().encode()
        assert text == b"a\\tb\\\\c\\r\\nd" * 20
        assert layout.nul_bytes == {"Txt": 20}
    finally:
        streamed_values.SLICE_BYTES = 1 << 20  # type: ignore[misc]


def test_json_nul_escapes_removed_with_backslash_parity() -> None:
    assert json_without_nul(b'{"a": "x\\u0000y"}') == (b'{"a": "xy"}', 1)
    assert json_without_nul(b'{"a": "x\\\\u0000y"}') == (b'{"a": "x\\\\u0000y"}', 0)
    assert json_without_nul(b'{"a": "\0"}') == (b'{"a": ""}', 1)


def test_carry_error_names_table_columns_and_key_never_the_value() -> None:
    layout = RowLayout("document", True, [("RawBase64", "text"), ("Thumbnail", "bytea")], ["DocNum"])
    error = carry_error(layout, (b"line", b"secret", b"x", b"42"), OSError("Lost connection\nmore"))
    text = str(error)
    assert "table 'document'" in text
    assert "RawBase64, Thumbnail" in text
    assert "DocNum=42" in text
    assert "secret" not in text
    assert "more" not in text


def test_keys_first_from_joins_the_renamed_keys_straight_to_the_table() -> None:
    sql = keys_first_from("`doc`", ["Pat", "Kind"], "`Stamp` >= %s", " ORDER BY `Stamp` LIMIT 5")
    assert sql == (
        "(SELECT `Pat` AS cf_k0, `Kind` AS cf_k1 FROM `doc` AS cf_scan WHERE `Stamp` >= %s ORDER BY `Stamp` LIMIT 5) "
        "AS cf_keys STRAIGHT_JOIN `doc` ON `doc`.`Pat` = cf_keys.cf_k0 AND `doc`.`Kind` = cf_keys.cf_k1"
    )
