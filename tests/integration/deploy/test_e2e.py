"""End to end: a local Prefect server, prefect.yaml deployed, a worker, `prefect deployment run --watch`.

A `process` work pool stands in for the Kubernetes one (no cluster here); a
real `kubernetes` pool is created from k8s/base-job-template.json as well, and
`prefect deploy --all` of the unmodified prefect.yaml against it shows the
server accepts every deployment's job variables under our template.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blocks.databases import MySQLServer, PostgresServer
from clinicflow_dev import generator
from tests.integration.deploy.e2e_support import (
    K8S_POOL,
    PROCESS_POOL,
    REPO,
    TEST_IMAGE,
    PrefectStack,
    block_env,
    deployments_on_server,
    process_pool_copy_of_prefect_yaml,
)
from tests.support.services import GcsEmulator  # gcs_emulator_server: the session's (tests/support/services.py)

# One xdist group: its module-wide stack starts once, on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("e2e-deploy"), pytest.mark.timeout(600)]


def flow_name(entrypoint: str) -> str:
    """The flow's name as Prefect registers it (deployment run names are '<flow>/<deployment>')."""
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(REPO / entrypoint.split(":")[0]) + ":" + entrypoint.split(":")[1]).name


def entrypoint_of(name: str) -> str:
    import yaml

    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    (found,) = [d["entrypoint"] for d in deployments if d["name"] == name]
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    running = PrefectStack.start(tmp_path_factory.mktemp("prefect-e2e"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def databases(
    stack: PrefectStack, tmp_path_factory: pytest.TempPathFactory, gcs_emulator_server: GcsEmulator
) -> Iterator[dict[str, Any]]:
    """A seeded OpenDental source, an empty replica and analytics database, a DICOM reports
    database with the demo reports, a bucket on the GCS emulator; their CLINICFLOW_* variables."""
    from clinicflow.core.sql import quote_ident
    from clinicflow_dev.dicom_demo import DEMO_FILES, seed_demo_reports
    from tests.conftest import unique_name

    admin_mysql = MySQLServer(host="127.0.0.1", port=3306, username="root", database="")
    admin_pg = PostgresServer(host="127.0.0.1", port=5432, username="postgres", database="postgres")
    names = {
        "source": unique_name("e2e_src"),
        "replica": unique_name("e2e_rep"),
        "analytics": unique_name("e2e_pg"),
        "dicom": unique_name("e2e_dicom"),
    }
    conn = admin_mysql.connect(database=None)
    with conn.cursor() as cur:
        for key in ("source", "replica"):
            cur.execute(f"CREATE DATABASE {quote_ident(names[key], 'mysql')} CHARACTER SET utf8mb3")
    conn.close()
    pg = admin_pg.connect()
    pg.autocommit = True
    with pg.cursor() as cur:
        for key in ("analytics", "dicom"):
            cur.execute(f"CREATE DATABASE {quote_ident(names[key], 'postgres')}")
    pg.close()
    servers = {
        "opendental-source": admin_mysql.model_copy(update={"database": names["source"]}),
        "opendental-replication": admin_mysql.model_copy(update={"database": names["replica"]}),
        "analytics-postgres": admin_pg.model_copy(update={"database": names["analytics"]}),
        "dicom-reports-postgres": admin_pg.model_copy(update={"database": names["dicom"]}),
    }
    counts = generator.seed(servers["opendental-source"], scale=0.01)
    dicom_dir = tmp_path_factory.mktemp("dicom-files")
    dicom_files = seed_demo_reports(servers["dicom-reports-postgres"], dicom_dir)
    bucket = gcs_emulator_server.new_bucket()
    env: dict[str, str] = {
        "STORAGE_EMULATOR_HOST": gcs_emulator_server.host,
        "CLINICFLOW_DICOM_REPORTS_BUCKET_BUCKET": bucket,
        "CLINICFLOW_DICOM_REPORTS_BUCKET_PROJECT": "clinicflow-e2e",
    }
    for name, server in servers.items():
        env.update(block_env(name, server))
    try:
        yield {
            "servers": servers,
            "env": env,
            "counts": counts,
            "bucket": bucket,
            "gcs": gcs_emulator_server,
            "dicom_files": dicom_files,
            "dicom_dir": str(dicom_dir.resolve()),
            "dicom_bad_files": sum(1 for demo in DEMO_FILES if demo.expected_failure),
        }
    finally:
        conn = admin_mysql.connect(database=None)
        with conn.cursor() as cur:
            for key in ("source", "replica"):
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(names[key], 'mysql')}")
        conn.close()
        pg = admin_pg.connect()
        pg.autocommit = True
        with pg.cursor() as cur:
            for key in ("analytics", "dicom"):
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(names[key], 'postgres')} WITH (FORCE)")
        pg.close()


@pytest.fixture(scope="module")
def deployed(stack: PrefectStack, databases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> PrefectStack:
    """Pools, blocks, deployments and a worker, set up the way docs/deploy.md tells an operator to."""
    created = stack.run(
        [
            "prefect",
            "work-pool",
            "create",
            K8S_POOL,
            "--type",
            "kubernetes",
            "--base-job-template",
            str(REPO / "k8s" / "base-job-template.json"),
        ]
    )
    assert created.returncode == 0, created.stdout + created.stderr
    # The stand-in pool through the REST API (one CLI start less; the CLI form is shown above).
    stack.create_process_pool(PROCESS_POOL)

    blocks = stack.run(["clinicflow", "blocks", "setup", "--from-env"], databases["env"])
    assert blocks.returncode == 0, blocks.stdout + blocks.stderr
    assert blocks.stdout.count("created") == 5, blocks.stdout  # every block the deployments use
    for secret in {v for k, v in databases["env"].items() if k.endswith("_PASSWORD") and v}:
        assert secret not in blocks.stdout + blocks.stderr

    # The shipped prefect.yaml, unchanged, onto the Kubernetes pool.
    k8s = stack.run(["prefect", "--no-prompt", "deploy", "--all"], {"CLINICFLOW_IMAGE": TEST_IMAGE})
    assert k8s.returncode == 0, k8s.stdout + k8s.stderr
    # Kept before the process-pool deploy below replaces these deployments (same names).
    stack.snapshots["kubernetes"] = deployments_on_server(stack)

    # The process-pool copy, whose runs execute this checkout's code.
    copy = process_pool_copy_of_prefect_yaml(tmp_path_factory.mktemp("e2e-yaml") / "prefect.yaml", PROCESS_POOL)
    local = stack.run(
        ["prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(copy)], {"CLINICFLOW_IMAGE": TEST_IMAGE}
    )
    assert local.returncode == 0, local.stdout + local.stderr
    # The worker's environment holds no credentials (the flow runs load blocks), only the emulator address.
    stack.start_worker(PROCESS_POOL, {"STORAGE_EMULATOR_HOST": databases["gcs"].host})
    return stack


def test_deploy_all_against_the_kubernetes_pool_keeps_job_variables(deployed: PrefectStack) -> None:
    import yaml

    shipped = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    on_server = deployed.snapshots["kubernetes"]
    assert {d["work_pool_name"] for d in on_server} == {K8S_POOL}
    assert sorted(d["name"] for d in on_server) == sorted(shipped)
    for deployment in on_server:
        variables = deployment["job_variables"]
        assert variables["image"] == TEST_IMAGE
        expected = shipped[deployment["name"]]["work_pool"]["job_variables"]
        assert variables["env_from"] == expected["env_from"]
        assert variables["memory_limit"] == expected["memory_limit"]
        limit = shipped[deployment["name"]].get("concurrency_limit")
        if limit is None:  # fan-out children: a global limit throttles them, not a deployment limit
            assert deployment["global_concurrency_limit"] is None
        else:
            assert deployment["global_concurrency_limit"]["limit"] == limit["limit"]
            assert deployment["concurrency_options"]["collision_strategy"] == limit["collision_strategy"]
        assert deployment["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}]
    nightly = next(d for d in on_server if d["name"] == "nightly")
    (schedule,) = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *"
    assert schedule["schedule"]["timezone"] == "America/New_York"


def run_deployment(stack: PrefectStack, deployment: str, params: list[str], timeout: int = 240) -> tuple[int, str]:
    full_name = f"{flow_name(entrypoint_of(deployment))}/{deployment}"
    args = ["prefect", "deployment", "run", full_name, "--watch", "--watch-timeout", str(timeout)]
    for param in params:
        args += ["--param", param]
    done = stack.run(args, timeout=timeout + 60)
    return done.returncode, done.stdout + done.stderr + "\n--- worker log ---\n" + stack.worker_log(PROCESS_POOL)


def test_schema_analysis_deployment_runs_to_completion(deployed: PrefectStack, tmp_path: Path) -> None:
    output = tmp_path / "tables.yml"
    code, log = run_deployment(deployed, "analyze-schema", ["check=false", f"output={output}"])
    assert code == 0, log
    assert "Completed" in log
    text = output.read_text(encoding="utf-8")
    assert "patient:" in text
    assert "procedurelog:" in text


def test_nightly_deployment_loads_the_source_into_postgres(deployed: PrefectStack, databases: dict[str, Any]) -> None:
    code, log = run_deployment(deployed, "nightly", [])
    assert code == 0, log
    counts = databases["counts"]
    pg = databases["servers"]["analytics-postgres"].connect()
    replica = databases["servers"]["opendental-replication"].connect()
    try:
        with pg.cursor() as cur, replica.cursor() as rcur:
            for table in ("patient", "procedurelog", "payment"):
                cur.execute(f'SELECT count(*) FROM raw."{table}"')
                assert cur.fetchone()[0] == counts[table], table
                rcur.execute(f"SELECT count(*) FROM `{table}`")
                assert rcur.fetchone()[0] == counts[table], table
    finally:
        pg.close()
        replica.close()
    for secret in {v for k, v in databases["env"].items() if k.endswith("_PASSWORD") and v}:
        assert secret not in log


def test_dicom_deployment_exports_to_the_gcs_emulator(deployed: PrefectStack, databases: dict[str, Any]) -> None:
    from clinicflow.dicom.outputs import csv_object_name

    # The demo set holds a few deliberately bad files; they are failures the run tolerates here.
    # The demo's file:// locations are allowed by naming their folder.
    code, log = run_deployment(
        deployed,
        "dicom-reports",
        [f"failure_threshold={databases['dicom_bad_files']}", f"allowed_roots={json.dumps([databases['dicom_dir']])}"],
    )
    assert code == 0, log
    objects = databases["gcs"].objects(databases["bucket"], prefix="dicom-reports/")
    jpgs = [name for name in objects if name.endswith(".jpg")]
    good_files = databases["dicom_files"] - databases["dicom_bad_files"]
    assert len(jpgs) >= good_files, sorted(objects)
    csv_text = objects[csv_object_name("dicom-reports")].download_as_text()
    assert "No acute findings." in csv_text
