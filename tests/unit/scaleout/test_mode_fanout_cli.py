"""`--mode fanout` on nightly, dicom run and ingest run: without a Prefect server there are no workers (exit 2)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clinicflow.cli import app


@pytest.mark.parametrize("command", [["nightly"], ["dicom", "run"], ["ingest", "run", "/tmp/none/*.txt"]])
def test_fanout_needs_a_prefect_server(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: None}):
        out = CliRunner().invoke(app, [*command, "--mode", "fanout"])
    assert out.exit_code == 2
    assert "--mode fanout needs a Prefect server" in out.output
    bad = CliRunner().invoke(app, [*command, "--mode", "sideways"])
    assert bad.exit_code == 2
    said = " ".join(bad.output.replace("│", " ").split())
    assert (
        "--mode must be in-pod or fanout" in said
        or "Invalid value for --mode: Input should be 'in-pod' or 'fanout'" in said
    )
