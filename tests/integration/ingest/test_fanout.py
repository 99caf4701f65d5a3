"""Ingest fan-out: two prefix children running at once equal one in-pod run (documents, Medical rows, dead letters)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clinicflow.scaleout import fanout
from tests.integration.ingest.conftest import PNG, pg_rows, referral, write_tree

DOCUMENTS = (
    "SELECT uri, version, sha256, size_bytes, mime_sniffed, is_binary, text_content, content_base64, "
    "content_pointer, count(*) OVER () FROM {s}.documents ORDER BY uri"
)
MEDICAL = (
    "SELECT d.uri, m.patient_id, m.patient_name, m.date_of_birth, m.encounter_date, m.provider, "
    "m.diagnosis_codes, m.procedure_codes, m.medications, m.summary, m.extractor "
    "FROM {s}.medical m JOIN {s}.documents d ON d.id = m.document_id ORDER BY d.uri"
)
LETTERS = "SELECT item_key, stage, reason, status, attempts FROM {s}.dead_letters ORDER BY item_key, stage"


def test_two_prefix_children_at_once_equal_one_in_pod_run(
    prefect_server: None, ingest_db: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import flows.ingest_files as ingest_flow
    from flows.ingest_files import ingest_files, ingest_files_prefix

    files = {f"in/2024/letter{n}.txt": referral(n) for n in range(5)}
    files |= {f"in/2023/old{n}.txt": referral(90 + n) for n in range(3)}
    files |= {
        "in/2024/no-id.txt": b"A note with no labelled fields.",
        "in/2023/big.txt": b"x" * 300_000,
        "in/top.txt": referral(77),
        "in/top.txt.bak": referral(78),
        "in/2024/scan.png": PNG,
    }
    write_tree(tmp_path, files)
    monkeypatch.setenv("CLINICFLOW_ANALYTICS_POSTGRES_DATABASE", ingest_db.database)
    pattern = str(tmp_path / "in" / "**" / "*.txt")
    common = {"batch_size": 2, "max_file_mb": 0.25, "max_error_rate": 0.5}

    in_pod = ingest_files(pattern, ingest_schema="ingest_in_pod", return_state=True, **common)
    assert in_pod.is_completed(), in_pod.message

    started: list[dict[str, Any]] = []

    def children_in_threads(deployment, run_key, partitions, *, width):
        """Stands in for the work pool: every child run at the same time, in this process."""
        started.append(partitions)
        together = threading.Barrier(len(partitions))

        def child(name: str) -> fanout.ChildRun:
            together.wait(timeout=120)
            state = ingest_files_prefix(**partitions[name], return_state=True)
            return fanout.ChildRun(
                name, 0, str(state.state_details.flow_run_id), state.type.value, state.name, state.message or ""
            )

        with ThreadPoolExecutor(len(partitions)) as pool:
            return {c.partition: c for c in pool.map(child, list(partitions))}

    monkeypatch.setattr(ingest_flow, "run_partitions", children_in_threads)
    fanned = ingest_files(
        pattern, ingest_schema="ingest_fanout", mode="fanout", partitions=2, return_state=True, **common
    )
    assert fanned.is_completed(), fanned.message

    (parts,) = started
    assert len(parts) == 2
    groups = [g for p in parts.values() for g in p["prefixes"]]
    assert sorted(groups) == ["2023/", "2024/", "top.txt"]
    assert len(set(groups)) == len(groups)

    for query in (DOCUMENTS, MEDICAL, LETTERS):
        expected = pg_rows(ingest_db, query.format(s="ingest_in_pod"))
        assert expected
        assert pg_rows(ingest_db, query.format(s="ingest_fanout")) == expected, query
    result, expected = fanned.result(), in_pod.result()
    assert (result["staged"], result["extracted"], result["dead_lettered"]) == (
        expected["staged"],
        expected["extracted"],
        expected["dead_lettered"],
    )
