"""The local fan-out recipe of docs/scale-out.md, step by step: process pool, N workers, `clinicflow fanout setup`.

`clinicflow ingest run PATTERN --mode fanout --extractor llm` runs the parent in
the terminal's process (it holds no worker slot), and the children on the
pool's workers. Each child extracts its partition through an OpenAI-compatible
model (a local server with a hosted model's latency), so, as in production,
a child's time is mostly waiting on the model, not CPU. With 2 workers of
limit 1 the 4 equal children run two at a time and never more (their stamps,
taken by a worker and ended, overlap two by two), with 1 worker one at a time;
the parent's wall time of both runs is printed (bench.bench_fanout measures it).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clinicflow.cli import app
from clinicflow_dev.demo_service import stop_process_group
from tests.conftest import unique_name
from tests.integration.ingest.conftest import ingest_db, pg_rows, referral, write_tree  # noqa: F401 - fixture
from tests.integration.ingest.llm_server import LLMServer, llm_server  # noqa: F401 - fixture

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[3]
# Per partition: the 4 children are equal, each a real ingest (read, stage, extract through the model, commit)
# and not a sleep. The LLM extractor asks for batches of 8 documents (the block's default), one request after
# another; at 0.1 s per document of a request a child waits ~3 s on the model, beside its process start (~5 s):
# long enough for two workers' children to overlap (the ratios docs/scale-out.md reports ran at 0.4 s a document).
FILES = 32
SECONDS_PER_DOCUMENT = 0.1
LLM_BATCH = 8


def worker(pool: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Step 3 of the recipe: `prefect worker start --pool POOL --type process --limit 1`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process", "--limit", "1"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_workers(pool: str, count: int, timeout: float = 240) -> None:
    """A worker counts once it has polled the pool (started and online)."""
    from prefect import get_client

    async def online() -> int:
        async with get_client() as client:
            return sum(w.status.value == "ONLINE" for w in await client.read_workers_for_work_pool(pool))

    deadline = time.monotonic() + timeout
    while asyncio.run(online()) < count:
        assert time.monotonic() < deadline, f"{count} worker(s) of {pool} not online after {timeout} s"
        time.sleep(1)


def most_at_once(spans: list[tuple[Any, Any]]) -> int:
    """The most spans open at one instant (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def worker_spans(runs: list[Any]) -> list[tuple[Any, Any]]:
    """Each child's (taken by a worker, ended): from its Pending state, when a worker took it and started its
    process, to its end; the worker's only slot is the child's for all of that time."""
    from prefect import get_client

    async def read() -> list[tuple[Any, Any]]:
        async with get_client() as client:
            spans = []
            for run in runs:
                states = await client.read_flow_run_states(run.id)
                taken = min(s.timestamp for s in states if s.type.value == "PENDING")
                spans.append((taken, run.end_time))
            return sorted(spans)

    return asyncio.run(read())


def children_of(schema: str) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from flows.fanout_runner import FANOUT_TAG

    async def read() -> list[Any]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[FANOUT_TAG])))
        # A child gets the run's options whole (clinicflow.ingest.options.IngestRunOptions).
        return [r for r in runs if (r.parameters.get("options") or {}).get("ingest_schema") == schema]

    return asyncio.run(read())


def test_two_process_workers_run_four_equal_children_side_by_side(
    prefect_server: None,
    ingest_db: Any,  # noqa: F811
    llm_server: LLMServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import PREFECT_API_URL

    api_url = str(PREFECT_API_URL.value())
    llm_server.delay_per_document = SECONDS_PER_DOCUMENT
    pool, limit = unique_name("fanpool").replace("_", "-"), unique_name("fanlimit").replace("_", "-")
    # The workers (and so the children they start) read the same CLINICFLOW_* settings as the terminal, the
    # LLM block's among them (env mode: CLINICFLOW_INGEST_LLM_*).
    settings = {
        "CLINICFLOW_CREDENTIALS": "env",
        "CLINICFLOW_ANALYTICS_POSTGRES_DATABASE": ingest_db.database,
        "CLINICFLOW_FANOUT_LIMIT": limit,
        "CLINICFLOW_FANOUT_POLL_CAP_SECONDS": "2",
        "CLINICFLOW_INGEST_LLM_BASE_URL": llm_server.base_url,
        "CLINICFLOW_INGEST_LLM_MODEL": "local-model",
        "CLINICFLOW_INGEST_LLM_API_KEY": "test-key",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **settings,
        }
    )

    # Steps 1-2: the concurrency limit, the process pool and the child deployments on it.
    setup = CliRunner().invoke(app, ["fanout", "setup", "--slots", "2", "--name", limit, "--process-pool", pool])
    assert setup.exit_code == 0, setup.output
    assert "ingest-files-prefix" in setup.output

    def fanned_run(tag: str) -> float:
        """Step 4: the parent in this process; 4 equal prefix partitions."""
        write_tree(tmp_path / tag, {f"p{p}/r{n}.txt": referral(FILES * p + n) for p in range(4) for n in range(FILES)})
        started = time.monotonic()
        ran = CliRunner().invoke(
            app,
            [
                "ingest",
                "run",
                str(tmp_path / tag / "**" / "*.txt"),
                "--mode",
                "fanout",
                "--partitions",
                "4",
                "--fanout-width",
                "4",
                "--extractor",
                "llm",
                "--schema",
                f"ingest_{tag}",
            ],
        )
        wall = time.monotonic() - started
        assert ran.exit_code == 0, ran.output
        return wall

    workers = [worker(pool, env, tmp_path / "worker-1.log")]
    try:
        wait_for_workers(pool, 1)
        one = fanned_run("one")
        workers.append(worker(pool, env, tmp_path / "worker-2.log"))
        wait_for_workers(pool, 2)
        two = fanned_run("two")
    finally:
        for process in workers:
            stop_process_group(process)
    logs = "\n".join((tmp_path / f"worker-{i}.log").read_text(errors="replace")[-1500:] for i in (1, 2))

    for tag in ("one", "two"):
        children = children_of(f"ingest_{tag}")
        assert len(children) == 4, logs
        assert all(c.state.is_completed() for c in children), logs
        # Every file staged and extracted by the model (no fallback to one request per document).
        assert pg_rows(ingest_db, f"SELECT count(*) FROM ingest_{tag}.documents") == [(4 * FILES,)]
        assert pg_rows(ingest_db, f"SELECT extractor, count(*) FROM ingest_{tag}.medical GROUP BY 1") == [
            ("llm", 4 * FILES)
        ]
    assert len(llm_server.requests) == 2 * 4 * -(-FILES // LLM_BATCH)
    print(f"fan-out parent wall: 1 worker {one:.1f} s, 2 workers {two:.1f} s, ratio {two / one:.2f}")
    # The scale-out itself, not a stopwatch (a shared CI machine's load moves the ratio; `bench.bench_fanout`
    # measures it, bench/results/fanout-history.md): one worker runs the children one after another, two workers
    # run two at a time and never more.
    assert most_at_once(worker_spans(children_of("ingest_one"))) == 1, logs
    assert most_at_once(worker_spans(children_of("ingest_two"))) == 2, logs
