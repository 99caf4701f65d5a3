"""Library messages (plain ``clinicflow`` stdlib loggers, no Prefect in the library) reach a flow or task run's logs
in the Prefect API through ``PREFECT_LOGGING_EXTRA_LOGGERS=clinicflow`` (flows/runtime.py RUN_LOG_ENV)."""

from __future__ import annotations

import uuid

from prefect import flow, get_client, task
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from clinicflow.core.logs import get_logger
from clinicflow.core.retry import TransientError, call_with_retry


@task
def _retried_once(marker: str) -> str:
    tries: list[int] = []

    def flaky() -> str:
        if not tries:
            tries.append(1)
            raise TransientError("first try fails")
        return "done"

    return call_with_retry(flaky, what=f"probe {marker}", sleep=lambda _delay: None)


@flow(name="clinicflow-run-logs-probe")
def _probe(marker: str) -> str:
    get_logger("clinicflow.probe").info("library info line %s", marker)
    return _retried_once(marker)


def test_library_lines_reach_the_flow_runs_logs() -> None:
    marker = uuid.uuid4().hex
    state = _probe(marker, return_state=True)
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    APILogHandler().flush()  # the batched log worker delivers this process's queued logs first

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    by_message = {log.message: log for log in logs}

    info = by_message[f"library info line {marker}"]
    assert info.name == "clinicflow.probe"
    assert info.task_run_id is None
    retry = next(log for log in logs if log.message.startswith(f"probe {marker}: transient error (TransientError)"))
    assert retry.name == "clinicflow.core.retry"
    assert retry.task_run_id is not None  # the task run's line, not only the flow run's
