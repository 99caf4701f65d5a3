"""The data-processing API (FastAPI): data files, processing requests, results, live updates, results page.

``create_app(settings)`` builds the app; ``clinicflow serve`` runs it with
uvicorn. Every endpoint except ``/health`` and the static results page
requires ``Authorization: Bearer <token>`` (the WebSocket: the token in its first message or
subprotocol, never the URL; limits and bad values: :mod:`clinicflow.service.limits`).
A processing request is validated against the processor registry (422
naming the field), inserted PENDING and answered at once; the dispatcher
(:mod:`clinicflow.service.dispatch`, a child process of the API) then sends it
to the task workers as a background task run (or, for a huge file, as a
``process-data`` deployment run).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile, WebSocket
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

from clinicflow.connectors.objectstore.clients import store_for_block
from clinicflow.processing import sandbox, store
from clinicflow.processing.base import InvalidRequest
from clinicflow.processing.datafiles import DataFileError
from clinicflow.processing.files import register_uri, store_upload
from clinicflow.processing.processors import REGISTRY, validate_request
from clinicflow.service import limits
from clinicflow.service.dispatch import DispatcherProcess, as_deployment_run, cancel_task_run
from clinicflow.service.live import LiveUpdates
from clinicflow.service.pool import ConnectionPool
from clinicflow.service.series_api import ResultSeries, series_router
from clinicflow.service.settings import ServiceSettings
from clinicflow.service.submit import GroupCommit, KnownFiles, NewRow

STATIC = Path(__file__).parent / "static"
UPLOAD_BLOCK = 1 << 20
# The reconciler looks at active rows that have not moved for this long, this often.
RECONCILE_AFTER_SECONDS = 120.0
RECONCILE_EVERY_SECONDS = 60.0


# Above PostgreSQL's bigint a value is a 422 naming it, not a database error.
Offset = Annotated[int, Query(ge=0, le=limits.MAX_BIGINT)]
ResultId = Annotated[int, PathParam(ge=1, le=limits.MAX_BIGINT)]


class ProcessRequest(BaseModel):
    data_file_id: int = Field(ge=1, le=limits.MAX_BIGINT)
    processing_type: str = Field(max_length=100)
    parameters: dict[str, Any] = Field(default_factory=dict)


def invalid(field: str, message: str) -> HTTPException:
    """422 in FastAPI's own shape: the location names the request field."""
    return HTTPException(422, [{"loc": ["body", *field.split(".")], "msg": message, "type": "value_error"}])


def create_app(settings: ServiceSettings, *, pool_size: int = 10, dispatch: bool = True) -> FastAPI:
    """The app. ``dispatch``: it starts (and stops) the dispatcher process itself; False when the process
    that started several API processes runs the one dispatcher (:mod:`clinicflow.service.workers`)."""
    pool = ConnectionPool(settings.database.connect, pool_size)
    new_rows = GroupCommit(settings.database)
    writer = store_for_block(settings.bucket)
    live = LiveUpdates(settings.database)
    workdir = Path(tempfile.mkdtemp(prefix="clinicflow-serve-"))
    dispatcher = DispatcherProcess() if dispatch else None

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        def prepare() -> None:
            with pool.connection() as conn:
                store.ensure_tables(conn)
        await run_in_threadpool(prepare)
        await new_rows.start()
        app.state.sandbox = sandbox.log_mode()
        live.start()
        from prefect.client.orchestration import get_client

        try:
            # One Prefect client (one HTTP connection pool) for every request.
            async with get_client() as client:
                app.state.prefect = client
                reconciler = asyncio.create_task(_reconcile_forever(client, pool))
                if dispatcher is not None:
                    dispatcher.start()
                try:
                    yield
                finally:
                    reconciler.cancel()
                    if dispatcher is not None:
                        await asyncio.to_thread(dispatcher.stop)
        finally:
            await live.stop()
            await new_rows.close()
            pool.close()
            shutil.rmtree(workdir, ignore_errors=True)

    app = FastAPI(title="clinicflow data processing", lifespan=lifespan)
    app.add_middleware(limits.BodyLimit)
    limits.install_log_redaction()
    app.state.live = live
    bearer = HTTPBearer(auto_error=False)

    def token_ok(given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), settings.token.encode())  # type: ignore[union-attr]

    async def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None or not token_ok(credentials.credentials):
            raise HTTPException(401, "a valid API token is required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_token)]

    def db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        with pool.connection() as conn:
            return fn(conn, *args, **kwargs)

    # Data files never change once registered: a request reads its file's row count and columns from here.
    known_files = KnownFiles(lambda file_id: run_in_threadpool(db, store.get_data_file, file_id))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        try:
            await run_in_threadpool(db, lambda conn: conn.cursor().execute("SELECT 1"))
            database = "ok"
        except Exception as exc:  # noqa: BLE001 - reported by type only
            database = f"error: {type(exc).__name__}"
        dispatching = dispatcher.alive() if dispatcher is not None else "run by the serve process"
        return {"status": "ok" if database == "ok" and dispatching else "degraded", "database": database,
                "live_updates": live.listening.is_set(), "dispatcher": dispatching,
                "custom_scripts_sandbox": getattr(app.state, "sandbox", None) or sandbox.active_mode()}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
    series = ResultSeries(db, writer, workdir)
    app.include_router(series_router(series, auth))

    @app.get("/api/etl/processors", dependencies=auth)
    async def processors() -> dict[str, Any]:
        return {name: {"description": p.description, "parameters": p.params_model.model_json_schema()}
                for name, p in REGISTRY.items()}

    @app.post("/api/etl/files", status_code=201, dependencies=auth)
    async def add_file(file: UploadFile | None = File(None), uri: str | None = Form(None)) -> dict[str, Any]:
        if (file is None) == (uri is None):
            raise invalid("file", "send either a file (multipart) or a uri")
        if uri is not None:
            try:
                return await run_in_threadpool(db, register_uri, writer, uri, workdir)
            except InvalidRequest as exc:
                raise invalid(exc.field, exc.message) from None
            except DataFileError as exc:
                raise invalid("uri", str(exc)) from None
        assert file is not None
        local = workdir / f"upload-{uuid4().hex}"
        try:
            with open(local, "wb") as out:
                while block := await file.read(UPLOAD_BLOCK):
                    out.write(block)
            return await run_in_threadpool(db, store_upload, writer, local, file.filename or "data")
        except DataFileError as exc:
            raise invalid("file", str(exc)) from None
        finally:
            local.unlink(missing_ok=True)

    @app.get("/api/etl/files", dependencies=auth)
    async def list_files(limit: int = Query(50, ge=1, le=500), offset: Offset = 0) -> dict[str, Any]:
        rows, total = await run_in_threadpool(db, store.list_data_files, limit=limit, offset=offset)
        return {"items": rows, "total": total, "limit": limit, "offset": offset}

    @app.get("/api/etl/files/{file_id}/preview", dependencies=auth)
    async def preview_file(file_id: int, rows: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
        """First rows, columns and per-column stats of an uploaded file (read from the bucket)."""
        data_file = await run_in_threadpool(db, store.get_data_file, file_id)
        if data_file is None:
            raise HTTPException(404, f"no data file {file_id}")
        return await run_in_threadpool(_preview, writer, data_file, workdir, rows)

    @app.post("/api/etl/process", status_code=202, dependencies=auth)
    async def process(request: ProcessRequest) -> dict[str, Any]:
        """Validate, write the PENDING row (the outbox) and answer; the dispatcher creates the run."""
        data_file = await known_files.get(request.data_file_id)
        if data_file is None:
            raise invalid("data_file_id", f"no data file {request.data_file_id}")
        if bad := limits.check_json_value(request.parameters, "parameters"):
            raise invalid(*bad)
        try:
            params = validate_request(request.processing_type, request.parameters, scripts_dir=settings.scripts_dir,
                                      file_columns=[c["name"] for c in data_file["columns"]])
        except InvalidRequest as exc:
            raise invalid(exc.field, exc.message) from None
        as_deployment = as_deployment_run(int(data_file["row_count"]))
        # The dispatcher process hears of the row from its NOTIFY (committed with it).
        result_id = await new_rows.insert(NewRow(request.data_file_id, request.processing_type, params.model_dump(
            mode="json"), None if as_deployment else str(uuid4())))
        return {"id": result_id, "status": "PENDING", "runs_as": "deployment" if as_deployment else "task"}

    @app.get("/api/etl/results", dependencies=auth)
    async def list_results(status: Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CRASHED",
                                          "CANCELLED"] | None = None,
                           processing_type: str | None = Query(None, alias="type", max_length=100,
                                                                 pattern=r"^[A-Za-z0-9_]*$"),
                           limit: int = Query(50, ge=1, le=500), offset: Offset = 0) -> dict[str, Any]:
        rows, total = await run_in_threadpool(db, store.list_results, status=status, processing_type=processing_type,
                                              limit=limit, offset=offset)
        return {"items": rows, "total": total, "limit": limit, "offset": offset}

    async def one_result(result_id: int) -> dict[str, Any]:
        row: dict[str, Any] | None = await run_in_threadpool(db, store.get_result, result_id)
        if row is None:
            raise HTTPException(404, f"no result {result_id}")
        return row

    @app.get("/api/etl/results/{result_id}", dependencies=auth)
    async def get_result(result_id: ResultId) -> dict[str, Any]:
        return await one_result(result_id)

    @app.get("/api/etl/results/{result_id}/export", dependencies=auth)
    async def export(result_id: ResultId, format: Literal["json", "csv"] = "json") -> Any:
        row = await one_result(result_id)
        disposition = {"Content-Disposition": f'attachment; filename="result-{result_id}.{format}"'}
        # Full resolution, streamed: a series result's export holds every row of the data file (the row keeps
        # an overview, the chart its own downsampled points).
        if format == "json":
            json_chunks = await run_in_threadpool(series.json, row)
            return StreamingResponse(json_chunks, media_type="application/json", headers=disposition)
        csv_chunks = await run_in_threadpool(series.csv, row)
        return StreamingResponse(csv_chunks, media_type="text/csv; charset=utf-8", headers=disposition)

    @app.delete("/api/etl/results/{result_id}", dependencies=auth)
    async def delete(result_id: ResultId) -> dict[str, Any]:
        row = await run_in_threadpool(db, store.get_result, result_id, with_data=False)
        if row is None:
            raise HTTPException(404, f"no result {result_id}")
        cancelled = cancelled_task = None
        if row["status"] in store.ACTIVE and row["flow_run_id"]:
            cancelled = await _cancel_run(app.state.prefect, row["flow_run_id"])
        if row["status"] in store.ACTIVE and row.get("task_run_id"):
            with contextlib.suppress(Exception):  # the runner stops anyway (next progress write, script row check)
                cancelled_task = await cancel_task_run(app.state.prefect, row["task_run_id"])
        await run_in_threadpool(db, store.delete_result, result_id)
        return {"id": result_id, "deleted": True, "cancelled_flow_run": cancelled, "cancelled_task_run": cancelled_task}

    @app.websocket("/ws")
    async def updates(websocket: WebSocket) -> None:
        if not await _ws_login(websocket, token_ok):
            return
        subscriber = live.subscribe()
        try:
            while True:
                message = await subscriber.get()
                await websocket.send_json({"type": "etl_update", **message})
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            live.unsubscribe(subscriber)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


async def _ws_login(websocket: WebSocket, token_ok: Any) -> bool:
    """The token as a subprotocol (checked before the handshake) or as the first message; never the URL."""
    if "token" in websocket.query_params:
        await websocket.close(code=1008, reason="send the token in the first message or the subprotocol, "
                                                "not in the URL")
        return False
    offered = limits.ws_subprotocol_token(websocket.scope.get("subprotocols") or [])
    if offered is not None:
        if not token_ok(offered):
            await websocket.close(code=1008, reason="a valid token is required")
            return False
        await websocket.accept(subprotocol=limits.WS_SUBPROTOCOL)
        return True
    await websocket.accept()
    try:
        first = await asyncio.wait_for(websocket.receive_text(), limits.WS_AUTH_SECONDS)
        given = json.loads(first).get("token") if first.startswith("{") else None
    except (TimeoutError, ValueError, AttributeError, KeyError, WebSocketDisconnect, RuntimeError):
        given = None
    if not isinstance(given, str) or not token_ok(given):
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1008, reason='a valid token is required: {"type": "auth", "token": ...}')
        return False
    return True


async def _reconcile_forever(client: Any, pool: ConnectionPool) -> None:
    """Every minute: rows still active whose flow run is over get ended (see store.reconcile_ended_runs)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    log = logging.getLogger("clinicflow.service")

    def stale() -> dict[int, str]:
        with pool.connection() as conn:
            return store.stale_active_runs(conn, RECONCILE_AFTER_SECONDS)

    def reconcile(states: dict[int, str]) -> list[store.Transition]:
        with pool.connection() as conn:
            return store.reconcile_ended_runs(conn, states)

    while True:
        await asyncio.sleep(RECONCILE_EVERY_SECONDS)
        try:
            rows = await run_in_threadpool(stale)
            if not rows:
                continue
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(f) for f in rows.values()])), limit=len(rows))
            by_run = {str(run.id): run.state_type.value for run in runs if run.state_type is not None}
            ended = await run_in_threadpool(reconcile, {i: by_run[f] for i, f in rows.items() if f in by_run})
            for transition in ended:
                log.warning("result %s ended %s by the reconciler", transition.id, transition.status)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("reconciler: %s: %s", type(exc).__name__, exc)


async def _cancel_run(client: Any, flow_run_id: str) -> str | None:
    """Cancel a flow run still in flight: Cancelled before it started, else Cancelling (the worker stops it)."""
    from prefect.client.schemas.objects import State
    from prefect.states import Cancelled, Cancelling

    flow_run = await client.read_flow_run(UUID(flow_run_id))
    state = flow_run.state
    if state is None or state.is_final():
        return None
    new_state: State[Any] = Cancelled(message="result deleted") if (state.is_scheduled() or state.is_pending()) \
        else Cancelling(message="result deleted")
    await client.set_flow_run_state(UUID(flow_run_id), new_state, force=True)
    return flow_run_id


def _preview(writer: Any, data_file: dict[str, Any], workdir: Path, rows: int) -> dict[str, Any]:
    from clinicflow.processing.datafiles import preview

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        local = Path(tmp) / "data"
        writer.download(data_file["object_name"], local)
        return {"id": data_file["id"], **preview(local, data_file["format"], data_file["name"], rows)}
