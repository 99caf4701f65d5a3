"""The deployments table in docs/deploy.md is prefect.yaml's, and the README copies no deployment table of its own."""

from __future__ import annotations

from pathlib import Path

import yaml

from clinicflow_dev.deployments_table import DOC, deployments_table, documented_table

ROOT = Path(__file__).resolve().parents[2]


def test_docs_table_equals_prefect_yaml() -> None:
    assert documented_table() == deployments_table(), (
        f"{DOC.name} is stale: run `uv run python -m clinicflow_dev.deployments_table --write`"
    )


def test_every_deployment_has_a_row() -> None:
    names = [d["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]]
    table = documented_table()
    assert len(names) >= 10
    assert all(f"| `{name}` |" in table for name in names)


def test_the_table_generator_sees_a_change(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    spec["deployments"].append({"name": "planted", "entrypoint": "flows/x.py:y", "work_pool": {"name": "p"}})
    changed = tmp_path / "prefect.yaml"
    changed.write_text(yaml.safe_dump(spec))
    assert "| `planted` | `flows/x.py:y` | on demand | `p` | none |" in deployments_table(changed)
    assert deployments_table(changed) != documented_table()


def test_readme_has_no_deployment_table_of_its_own() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "| deployment |" not in readme
    assert "docs/deploy.md" in readme
