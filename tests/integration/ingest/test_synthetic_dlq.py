"""The synthetic source kind and the dead-letter drill: fail 10 %, replay at 0 %, every record exactly once."""

from __future__ import annotations

from typing import Any

from clinicflow.ingest.deadletter import count_letters, discard_letters, get_letter, list_letters, replay
from clinicflow.ingest.pipeline import IngestSettings, run_batches
from clinicflow.ingest.synthetic import generate, load_records
from tests.integration.ingest.conftest import pg_rows


def _run(server: Any, kind: str, count: int, settings: IngestSettings, batch_size: int = 100) -> Any:
    return run_batches(
        generate(kind, count, seed=7), batch_size, lambda batch, before: load_records(server, batch, settings, before)
    )


def test_fail_ten_percent_then_replay_loads_all_exactly_once(ingest_db: Any) -> None:
    first = _run(
        ingest_db, "events", 1000, IngestSettings(run_id="drill-1", fail_percentage=10, seed=42, max_error_rate=0.5)
    )
    dead = first.failures
    assert 70 <= dead <= 130, dead  # seeded: about 10 % of 1,000
    assert first.staged == 1000 - dead
    assert dict(first.dead_lettered) == {"load/injected-fault": dead}
    assert pg_rows(ingest_db, "SELECT count(*) FROM ingest.synthetic_records") == [(1000 - dead,)]
    letters = list_letters(ingest_db.connect(), status="open", limit=2000)
    assert len(letters) == dead
    assert all(letter["stage"] == "load" for letter in letters)
    one = get_letter(ingest_db.connect(), "ingest", letters[0]["id"])
    assert "[DLQ]" in one["message"]
    assert "[DLQ]" not in str(one["payload"])  # the clean record is kept

    # A rerun with the same setting: nothing duplicated, the same items fail again (attempts 2). Only the
    # failed items are new, so every new item fails: the rate is 1.0.
    again = _run(
        ingest_db, "events", 1000, IngestSettings(run_id="drill-2", fail_percentage=10, seed=42, max_error_rate=1.0)
    )
    assert (again.staged, again.skipped, again.failures) == (0, 1000 - dead, dead)
    assert pg_rows(ingest_db, "SELECT count(*), min(attempts) FROM ingest.dead_letters") == [(dead, 2)]

    result = replay(ingest_db, IngestSettings(run_id="replay-1", fail_percentage=0))
    assert (result.attempted, result.replayed, result.still_open) == (dead, dead, 0)
    rows = pg_rows(ingest_db, "SELECT record_id FROM ingest.synthetic_records ORDER BY record_id")
    assert [r[0] for r in rows] == [f"events-{n:07d}" for n in range(1000)]  # every key, once
    assert count_letters(ingest_db.connect()) == {("replayed", "load", "injected-fault"): dead}
    # Replaying again finds nothing open; a normal rerun loads nothing new.
    assert replay(ingest_db, IngestSettings(run_id="replay-2")).attempted == 0
    assert _run(ingest_db, "events", 1000, IngestSettings(run_id="drill-3")).staged == 0
    assert pg_rows(ingest_db, "SELECT count(*) FROM ingest.synthetic_records") == [(1000,)]


def test_max_error_rate_stops_the_run_and_publishes_nothing_past_it(ingest_db: Any) -> None:
    counts = _run(ingest_db, "logs", 1000, IngestSettings(run_id="r", fail_percentage=30, seed=1, max_error_rate=0.1))
    assert counts.stopped
    assert counts.listed == 100  # the first batch already crossed the threshold
    assert pg_rows(ingest_db, "SELECT count(*) FROM ingest.synthetic_records") == [(0,)]
    # its failures are recorded all the same
    assert pg_rows(ingest_db, "SELECT count(*) FROM ingest.dead_letters")[0][0] == counts.failures > 0


def test_discard(ingest_db: Any) -> None:
    _run(ingest_db, "blob", 50, IngestSettings(run_id="r", fail_percentage=20, seed=3, max_error_rate=1))
    letters = list_letters(ingest_db.connect())
    conn = ingest_db.connect()
    assert discard_letters(conn, "ingest", [letters[0]["id"]]) == 1
    assert discard_letters(conn, "ingest", [letters[0]["id"]]) == 0  # only open letters
    result = replay(ingest_db, IngestSettings(run_id="replay"))
    assert result.attempted == len(letters) - 1
    assert pg_rows(ingest_db, "SELECT count(*) FROM ingest.synthetic_records") == [(49,)]
