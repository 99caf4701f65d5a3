"""`clinicflow status` tables: what a reader sees in an 80-column terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from clinicflow.cli.status import _simple_table


def test_times_read_to_the_second_and_markup_in_a_message_is_text() -> None:
    started = datetime(2026, 12, 5, 16, 2, 0, 422687, tzinfo=UTC)
    rows = [{"started_at": started, "status": "failed", "message": "[red]x[/red] in /tmp/inbox/*"}]
    console = Console(width=120, record=True)
    console.print(_simple_table("ingestion runs", rows, ("started_at", "status", "message")))
    text = console.export_text()
    assert "2026-12-05 16:02:00 " in text
    assert ".422687" not in text
    assert "+00:00" not in text
    assert "[red]x[/red] in /tmp/inbox/*" in text


def test_a_long_message_is_cut_at_a_word_with_an_ellipsis() -> None:
    message = "error rate 18.8% above max_error_rate 10.0% " + "(3 dead letter(s) of 16 new item(s)) " * 5 + "staged"
    console = Console(width=400, record=True)
    console.print(_simple_table("ingestion runs", [{"message": message}], ("message",)))
    (line,) = [row for row in console.export_text().splitlines() if "error rate" in row]
    shown = line.strip(" │|").strip()
    assert shown.endswith("…")
    assert len(shown) <= 200
    assert message.startswith(shown[:-1])
    assert shown[:-1].endswith(("item(s))", "of", "new", "16", "dead", "letter(s)", "(3"))  # a whole word
