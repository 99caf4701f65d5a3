"""Run verdicts: how a run that did several things (tables, partitions, child runs) says what failed.

One spelling for every flow: ``N of M <things> failed: <first details>``, and a
:class:`Verdict` that carries a run's one-line summary, its failure message
(None when it succeeded) and the status recorded for it. Pure functions: the
flows decide how to end (raise, return a Failed state) from the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Verdict:
    """A finished run's summary line, its failure message (None: it succeeded) and so its status."""

    summary: str
    failure: str | None = None

    @property
    def status(self) -> Literal["ok", "failed"]:
        return "failed" if self.failure is not None else "ok"

    @property
    def failed(self) -> bool:
        return self.failure is not None


def failed_of(failed: Sequence[str], total: int, things: str, *, limit: int = 10) -> str | None:
    """``"N of M <things> failed: a; b"`` naming the first ``limit`` failures, or None when none failed.

    ``failed`` holds one short detail per failure (``"table: reason"``, ``"partition (child run Crashed)"``);
    ``total`` counts every item the run had, failed or not.
    """
    if limit < 1:
        raise ValueError(f"verdict: limit must be at least 1, got {limit}")
    if not failed:
        return None
    if total < len(failed):
        raise ValueError(f"verdict: {len(failed)} {things} failed of only {total}")
    return f"{len(failed)} of {total} {things} failed: " + "; ".join(failed[:limit])


def shortened(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word, with an ellipsis ("staged (16): s" read as if the
    message ended there); a text without a space in its second half is cut where it must be."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut) + "…"
