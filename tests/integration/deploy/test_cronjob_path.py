"""The CronJob fallback's command, run here the way the CronJob runs it: env vars only, no Prefect API.

The command and plain env come from k8s/cronjob-nightly.yaml itself; the
Secrets' keys (envFrom) become CLINICFLOW_* variables pointing at local test
databases; /etc/clinicflow/tables.yml (the ConfigMap made from tables.yml)
becomes the repository's tables.yml.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from blocks.databases import MySQLServer, PostgresServer
from clinicflow_dev import generator
from tests.integration.deploy.conftest import K8S, REPO, load_yaml_documents
from tests.integration.deploy.e2e_support import BIN, block_env, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]

WRONG_PASSWORD = "fake-sentinel-not-a-credential-3"


def cronjob_container() -> dict[str, Any]:
    (cronjob,) = load_yaml_documents(K8S / "cronjob-nightly.yaml")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def run_cronjob_command(secret_env: dict[str, str], prefect_home: Path) -> subprocess.CompletedProcess:
    container = cronjob_container()
    env = {item["name"]: item["value"] for item in container["env"]}
    assert "PREFECT_API_URL" not in env
    env["CLINICFLOW_TABLES_FILE"] = str(REPO / "tables.yml")  # the ConfigMap's source
    env["PREFECT_HOME"] = str(prefect_home)  # the emptyDir
    env.update(secret_env)
    command = container["command"]
    executable = str(BIN / command[0])
    return subprocess.run(
        [executable, *command[1:]], env=clean_env(env), cwd=prefect_home, capture_output=True, text=True, timeout=420
    )


@pytest.fixture
def night(make_mysql_db: Callable[[str], MySQLServer], make_pg_db: Callable[[str], PostgresServer]) -> dict[str, Any]:
    source = make_mysql_db("cron_src")
    replica = make_mysql_db("cron_rep")
    analytics = make_pg_db("cron_pg")
    counts = generator.seed(source, scale=0.01)
    servers = {"opendental-source": source, "opendental-replication": replica, "analytics-postgres": analytics}
    return {"servers": servers, "counts": counts}


def secrets_for(servers: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, server in servers.items():
        env.update(block_env(name, server))
    return env


def test_cronjob_command_completes_the_night_with_env_only(night: dict[str, Any], tmp_path: Path) -> None:
    done = run_cronjob_command(secrets_for(night["servers"]), tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    counts = night["counts"]
    conn = night["servers"]["analytics-postgres"].connect()
    try:
        with conn.cursor() as cur:
            for table in ("patient", "procedurelog", "payment"):
                cur.execute(f'SELECT count(*) FROM raw."{table}"')
                assert cur.fetchone()[0] == counts[table], table
    finally:
        conn.close()


def test_cronjob_command_with_a_wrong_password_fails_and_never_prints_it(night: dict[str, Any], tmp_path: Path) -> None:
    servers = dict(night["servers"])
    servers["opendental-source"] = servers["opendental-source"].model_copy(
        update={"password": SecretStr(WRONG_PASSWORD)}
    )
    done = run_cronjob_command(secrets_for(servers), tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-6000:]
    assert WRONG_PASSWORD not in output
    assert "Access denied" in output or "opendental-source" in output or "failed" in output.lower(), output[-3000:]
