"""The service's limits over HTTP: upload size, bad values as 422s naming the field, the WebSocket login
without a token in any URL or log line, CSV export cells, the sandbox named in /health."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.processing.hostile_scripts import SENTINEL, parent_of
from tests.integration.processing.service_support import TOKEN, Service
from tests.integration.processing.test_api import signal_csv, submit, upload

# One xdist group with the other users of the session-scoped processing service: it starts once.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.xdist_group("processing-service"),
    pytest.mark.timeout(600),
]


def api_log(service: Service) -> str:
    assert service.api_log is not None
    return service.api_log.read_text(errors="replace")


def test_health_names_the_sandbox(service: Service) -> None:
    with service.client(token=None) as client:
        assert client.get("/health").json()["custom_scripts_sandbox"] == "bwrap"
    assert "custom script sandbox: bwrap" in api_log(service)  # the start-up line
    # The task workers, where scripts run, log theirs too (once started: the session's service may be fresh).
    deadline = time.monotonic() + 120
    while "custom script sandbox: bwrap" not in task_workers_log(service) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "custom script sandbox: bwrap" in task_workers_log(service)


def task_workers_log(service: Service) -> str:
    return "".join(p.read_text(errors="replace") for p in service.stack.home.glob("task-worker*.log"))


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent_of(int(entry.name)) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


def test_the_service_process_holds_no_secret_in_its_start_up_environment(service: Service) -> None:
    assert service.api is not None
    environ = Path(f"/proc/{service.api.pid}/environ").read_bytes()
    assert TOKEN.encode() not in environ
    assert b"CLINICFLOW_API_TOKEN" not in environ
    assert SENTINEL.encode() not in environ
    # Nor do the task workers: `processing workers` and the processes it starts (secrets handed over on a pipe).
    supervisor = next(p for p in service.started if "workers" in p.args)
    workers = [supervisor.pid, *children(supervisor.pid)]
    assert len(workers) >= 3, workers  # --concurrency 2
    for pid in workers:
        assert SENTINEL.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), pid


def test_an_upload_over_the_limit_is_a_413_before_it_is_spooled(service: Service) -> None:
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        yield b"t,voltage\n"
        for _ in range(64):  # 64 MiB offered against the fixture's 8 MiB
            sent["bytes"] += 1 << 20
            yield b"1,2\n" * (1 << 18)

    boundary = "clinicflowtestboundary"

    def multipart() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        yield from body()
        yield f"\r\n--{boundary}--\r\n".encode()

    with service.client() as client:
        try:
            response = client.post(
                "/api/etl/files",
                content=multipart(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        except Exception as exc:  # noqa: BLE001 - the server may close while we still send
            pytest.fail(f"no 413 answer: {exc!r}")
        assert response.status_code == 413, response.text
        assert "uploads are limited to 8 MiB (CLINICFLOW_PROCESSING_MAX_UPLOAD_MB)" in response.text
        assert sent["bytes"] < 64 << 20  # the server stopped reading: the rest was never sent
        declared = client.post("/api/etl/files", files={"file": ("big.csv", b"t\n" + b"1\n" * (5 << 20))})
        assert declared.status_code == 413, declared.text


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/etl/results?type=rolling%00mean", None, "type"),
        ("GET", "/api/etl/results?offset=9223372036854775808", None, "offset"),
        ("GET", "/api/etl/files?offset=99999999999999999999", None, "offset"),
        ("GET", "/api/etl/results/9223372036854775808", None, "result_id"),
        (
            "POST",
            "/api/etl/process",
            {"data_file_id": 9223372036854775808, "processing_type": "custom"},
            "data_file_id",
        ),
        ("POST", "/api/etl/process", {"data_file_id": 1, "processing_type": "x" * 10_000}, "processing_type"),
    ],
)
def test_bad_values_are_422_naming_the_field(
    service: Service, method: str, path: str, body: object, field: str
) -> None:
    with service.client() as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"]), response.text


@pytest.mark.parametrize(
    ("kind", "parameters", "field"),
    [
        ("custom", {"script": "x" * 10_000}, "parameters.script"),
        ("custom", {"script": "column_sum", "params": {"column": "t\u0000"}}, "parameters.params.column"),
        ("rolling_mean", {"window": 3, "chunk_rows": 100_000_000}, "parameters.chunk_rows"),
        ("peak_detection", {"max_points": 100_000_000}, "parameters.max_points"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    service: Service, tmp_path: Path, kind: str, parameters: dict, field: str
) -> None:
    signal_csv(tmp_path / "p.csv", rows=10)
    data_file = upload(service, tmp_path / "p.csv")
    with service.client() as client:
        response = client.post(
            "/api/etl/process",
            json={"data_file_id": data_file["id"], "processing_type": kind, "parameters": parameters},
        )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", *field.split(".")], response.text


def test_nan_and_infinity_in_parameters_are_422(service: Service, tmp_path: Path) -> None:
    signal_csv(tmp_path / "n.csv", rows=10)
    data_file = upload(service, tmp_path / "n.csv")
    for text, field in (
        ('{"height": NaN}', ["body", "parameters", "height"]),
        ('{"script": "column_sum", "params": {"x": [Infinity]}}', ["body", "parameters", "params", "x", "0"]),
    ):
        kind = "custom" if "script" in text else "peak_detection"
        raw = f'{{"data_file_id": {data_file["id"]}, "processing_type": "{kind}", "parameters": {text}}}'
        with service.client() as client:
            response = client.post("/api/etl/process", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == field, response.text


def test_websocket_login_keeps_the_token_out_of_urls_and_logs(service: Service) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    base = service.url.replace("http", "ws") + "/ws"
    with connect(base) as socket:  # first message
        socket.send(json.dumps({"type": "auth", "token": TOKEN}))
        socket.ping().wait(10)
    with connect(base, subprotocols=["clinicflow.v1", f"clinicflow.token.{TOKEN}"]) as socket:  # type: ignore[list-item]
        assert socket.subprotocol == "clinicflow.v1"
    # The server may close during the send or the receive.
    with connect(base) as socket, pytest.raises(ConnectionClosed):  # noqa: PT012
        socket.send(json.dumps({"type": "auth", "token": "wrong"}))
        socket.recv(10)
    leaked = "in-url-" + TOKEN
    # Refused: whatever the close looks like.
    with pytest.raises(Exception), connect(base + f"?token={leaked}") as socket:  # noqa: B017, PT011
        socket.recv(10)
    log = api_log(service)
    assert TOKEN not in log
    assert leaked not in log
    assert "token=***" in log


def test_csv_export_neutralises_formula_cells(service: Service, tmp_path: Path) -> None:
    (service.scripts_dir / "formulas.py").write_text(
        "def process(df, params):\n    return {'cell': ['=HYPERLINK(\"http://x\")', '+1', '-1', '@A1', 'ok']}\n",
        encoding="utf-8",
    )
    signal_csv(tmp_path / "f.csv", rows=5)
    data_file = upload(service, tmp_path / "f.csv")
    job = submit(service, data_file["id"], "custom", {"script": "formulas"})
    row = service.wait_for(job["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert row["status"] == "COMPLETED", row
    with service.client() as client:
        text = client.get(f"/api/etl/results/{job['id']}/export", params={"format": "csv"}).text
    assert text.splitlines() == ["cell", '"\'=HYPERLINK(""http://x"")"', "'+1", "'-1", "'@A1", "ok"]
