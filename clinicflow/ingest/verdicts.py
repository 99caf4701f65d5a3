"""What an ingest run reports: its summary artifact's rows and, when its error rate is too high, why it failed."""

from __future__ import annotations

from typing import Any

from clinicflow.ingest.pipeline import SET_ASIDE, RunCounts


def ingest_summary_rows(pattern: str, counts: RunCounts, seconds: float) -> list[dict[str, Any]]:
    """The summary artifact: counts only, files never named by content."""
    rows: list[dict[str, Any]] = [{"metric": "pattern", "value": pattern}]
    rows += [{"metric": k, "value": v} for k, v in counts.as_dict().items() if k != "dead_lettered_by_reason"]
    rows += [{"metric": f"dead-lettered {key}", "value": n} for key, n in sorted(counts.dead_lettered.items())]
    rows.append({"metric": "seconds", "value": round(seconds, 2)})
    return rows


def error_rate_failure(counts: RunCounts, max_error_rate: float) -> str | None:
    """Why a run (or a fan-out child) with these counts failed on its error rate, or None when it did not."""
    if not counts.stopped and not counts.above(max_error_rate):
        return None
    reasons = ", ".join(f"{k}={n}" for k, n in sorted(counts.dead_lettered.items()) if k not in SET_ASIDE)
    aside = f", {counts.set_aside} not clinical set aside (not counted)" if counts.set_aside else ""
    text = (
        f"error rate {counts.error_rate:.1%} above max_error_rate {max_error_rate:.1%} "
        f"({counts.failures} dead letter(s) of {counts.new} new item(s): {reasons}{aside}); "
    )
    if counts.stopped:
        return text + "the run stopped and the batch that crossed it was not published"
    return text + f"every readable document was staged ({counts.staged}): see `clinicflow dlq list`"
