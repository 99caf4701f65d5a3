"""Run progress: a Prefect progress artifact, plus a rich progress bar on a terminal."""

from __future__ import annotations

import re
import sys
import time
from typing import Any

from clinicflow.core.logs import get_logger

# Artifact updates are API calls: at most one per this many seconds (and always the last).
ARTIFACT_UPDATE_SECONDS = 2.0


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) from free text."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower())).strip("-")[:200] or "run"


def _in_prefect_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


class RunProgress:
    """Counts processed files; shows them as an artifact and, when interactive, a rich bar."""

    def __init__(
        self, total: int, *, key: str, description: str, show_bar: bool | None = None, console: Any = None
    ) -> None:
        self.total = max(total, 0)
        self.done = 0
        self.description = description
        self._artifact_id: Any = None
        self._last_update = 0.0
        self._bar: Any = None
        self._task: Any = None
        if _in_prefect_run():
            try:
                from prefect.artifacts import create_progress_artifact

                self._artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
            except Exception as exc:  # noqa: BLE001 - progress display must never fail the run
                get_logger("clinicflow.dicom").warning("no progress artifact: %s", type(exc).__name__)
        if show_bar is None:
            show_bar = sys.stderr.isatty()
        if show_bar:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=False,
                console=console,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=self.total or None)

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else min(100.0, 100.0 * self.done / self.total)

    def advance(self, files: int) -> None:
        self.done += files
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        self._update_artifact(force=False)

    def _update_artifact(self, *, force: bool) -> None:
        if self._artifact_id is None:
            return
        now = time.monotonic()
        if not force and now - self._last_update < ARTIFACT_UPDATE_SECONDS:
            return
        self._last_update = now
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(
                artifact_id=self._artifact_id,
                progress=round(self.percent, 1),
                description=f"{self.description}: {self.done}/{self.total} files",
            )
        except Exception as exc:  # noqa: BLE001 - progress display must never fail the run
            get_logger("clinicflow.dicom").debug("progress artifact update failed: %s", type(exc).__name__)

    def close(self) -> None:
        self._update_artifact(force=True)
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
