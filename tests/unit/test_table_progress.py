"""The nightly's terminal progress: each outcome the tier runner records reaches the watcher; rich or plain."""

from __future__ import annotations

import io

from rich.console import Console

from clinicflow.cli.nightly import table_progress
from clinicflow.core import progress
from clinicflow.opendental.metrics import TableOutcome
from flows.load_chain import _ReportedOutcomes


def run_a_tier() -> None:
    progress.tier_started(1, 2)
    outcomes = _ReportedOutcomes(1)
    outcomes["patient"] = TableOutcome("patient", rows=10, replication_rows=12)
    outcomes["claim"] = TableOutcome("claim", status="failed", rows=0)


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with table_progress(console):
        run_a_tier()
    assert out.getvalue().splitlines() == [
        "tier 1: 2 tables",
        "tier 1 patient: ok, 12 rows copied, 10 rows loaded",
        "tier 1 claim: failed, 0 rows loaded",
    ]
    run_a_tier()  # no watcher: nothing printed, nothing raised
    assert len(out.getvalue().splitlines()) == 3


def test_rich_bars_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    with table_progress(console):
        run_a_tier()
    text = out.getvalue()
    assert "tier 1: claim failed (0 loaded); total 12 copied, 10 loaded" in text
    assert "2/2" in text
