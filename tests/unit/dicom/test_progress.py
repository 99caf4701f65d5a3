"""Run progress outside Prefect: the rich bar counts files; artifact keys are valid Prefect keys."""

from __future__ import annotations

import io

from rich.console import Console

from flows.progress import RunProgress, artifact_key


def test_progress_bar_counts_files_and_needs_no_prefect_run() -> None:
    buffer = io.StringIO()
    progress = RunProgress(
        4,
        key="k",
        description="DICOM files of demo",
        show_bar=True,
        console=Console(file=buffer, force_terminal=True, width=100),
    )
    for _ in range(4):
        progress.advance(1)
    progress.close()
    assert progress.percent == 100.0
    assert "4/4" in buffer.getvalue()
    assert RunProgress(0, key="k", description="empty", show_bar=False).percent == 100.0


def test_artifact_keys_are_lowercase_dashes() -> None:
    assert artifact_key("dicom", "Site_A.2024", "summary") == "dicom-site-a-2024-summary"
