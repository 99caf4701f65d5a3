"""Data files: ``POST /api/etl/files`` (a multipart upload or a ``uri`` to register), the list, a preview."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from uuid import uuid4

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from clinicflow.processing import store
from clinicflow.processing.base import InvalidRequest
from clinicflow.processing.datafiles import DataFileError
from clinicflow.processing.files import register_uri, store_upload
from clinicflow.service.auth import AUTH
from clinicflow.service.routes.params import Offset, invalid
from clinicflow.service.state import Service

UPLOAD_BLOCK = 1 << 20

router = APIRouter(dependencies=AUTH)


@router.post("/api/etl/files", status_code=201)
async def add_file(
    service: Service, file: UploadFile | None = File(None), uri: str | None = Form(None)
) -> dict[str, Any]:
    if (file is None) == (uri is None):
        raise invalid("file", "send either a file (multipart) or a uri")
    if uri is not None:
        try:
            return await run_in_threadpool(service.db, register_uri, service.writer, uri, service.workdir)
        except InvalidRequest as exc:
            raise invalid(exc.field, exc.message) from None
        except DataFileError as exc:
            raise invalid("uri", str(exc)) from None
    assert file is not None
    local = service.workdir / f"upload-{uuid4().hex}"
    try:
        with open(local, "wb") as out:
            while block := await file.read(UPLOAD_BLOCK):
                out.write(block)
        return await run_in_threadpool(service.db, store_upload, service.writer, local, file.filename or "data")
    except DataFileError as exc:
        raise invalid("file", str(exc)) from None
    finally:
        local.unlink(missing_ok=True)


@router.get("/api/etl/files")
async def list_files(service: Service, limit: int = Query(50, ge=1, le=500), offset: Offset = 0) -> dict[str, Any]:
    rows, total = await run_in_threadpool(service.db, store.list_data_files, limit=limit, offset=offset)
    return {"items": rows, "total": total, "limit": limit, "offset": offset}


@router.get("/api/etl/files/{file_id}/preview")
async def preview_file(service: Service, file_id: int, rows: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
    """First rows, columns and per-column stats of an uploaded file (read from the bucket)."""
    data_file = await run_in_threadpool(service.db, store.get_data_file, file_id)
    if data_file is None:
        raise HTTPException(404, f"no data file {file_id}")
    return await run_in_threadpool(_preview, service.writer, data_file, service.workdir, rows)


def _preview(writer: Any, data_file: dict[str, Any], workdir: Path, rows: int) -> dict[str, Any]:
    from clinicflow.processing.datafiles import preview

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        local = Path(tmp) / "data"
        writer.download(data_file["object_name"], local)
        return {"id": data_file["id"], **preview(local, data_file["format"], data_file["name"], rows)}
