"""Durable progress of a DICOM reports dataset, in PostgreSQL.

Pods are ephemeral, so nothing about progress lives on local disk. Per
dataset (the output prefix), three tables in schema ``clinicflow_dicom``
(``files``, ``uploads``, ``failures``: see :mod:`clinicflow.dicom.state_schema`).

Locations are stored as :func:`~clinicflow.dicom.download.stored_location`
gives them: a URL's user info and query string (signed-URL tokens) never
reach these tables or the CSVs written from them.

Crash safety: a file is marked ``uploading`` (with its planned object names)
before its first object is sent, and ``done`` only after its last. A run
killed in between leaves ``uploading`` rows; the next run checks the bucket
for just those objects and skips the ones already there, so a kill at any
point causes no duplicate upload and no gap.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from clinicflow.connectors.connections import connected
from clinicflow.connectors.protocols import PostgresServerLike
from clinicflow.core.dbapi import PgConnection, PgCursor, column_names
from clinicflow.core.errors import ClinicflowError
from clinicflow.core.sql import quote_ident
from clinicflow.dicom.download import stored_location
from clinicflow.dicom.reports import OUTPUT_COLUMNS, FileKey
from clinicflow.dicom.state_schema import state_tables_ddl

DEFAULT_STATE_SCHEMA = "clinicflow_dicom"
CSV_FETCH_ROWS = 2000


class DatasetBusyError(ClinicflowError):
    """Another run holds the dataset."""


@dataclass(frozen=True)
class FileState:
    status: str
    objects: tuple[str, ...]
    csv_row: dict[str, Any] | None


@dataclass(frozen=True)
class Failure:
    key: FileKey
    stage: str
    kind: str
    reason: str


class StateStore:
    """All reads and writes of the state tables for one dataset.

    Holds one connection (opened on first use) so a batch costs a handful of
    round trips, not a connection per statement; use one store per thread and
    ``close()`` it (or use it as a context manager). Every method commits its
    own transaction.
    """

    def __init__(self, server: PostgresServerLike, dataset: str, schema: str = DEFAULT_STATE_SCHEMA) -> None:
        if not dataset:
            raise ValueError("dataset must not be empty")
        self.server = server
        self.dataset = dataset
        self.schema = schema
        self._s = quote_ident(schema, "postgres")
        self._conn: PgConnection | None = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @contextlib.contextmanager
    def _tx(self, name: str | None = None) -> Iterator[PgCursor]:
        """A cursor in its own transaction: committed on success, rolled back on error."""
        if self._conn is None or self._conn.closed:
            self._conn = self.server.connect()
        conn = self._conn
        try:
            with conn.cursor(name=name) if name else conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001 - connection already broken; drop it
                self.close()
            raise

    def ensure_schema(self) -> None:
        with self._tx() as cur:
            # Serialise concurrent first runs creating the schema.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"clinicflow_dicom_schema:{self.schema}",))
            for sql in state_tables_ddl(self._s):
                cur.execute(sql)

    @contextlib.contextmanager
    def run_lock(self, part: str = "") -> Iterator[None]:
        """Hold the dataset (or one ``part`` of a fanned-out run) for one run: a second one fails at once.

        A session-level advisory lock on its own connection, so a killed pod
        releases it with its connection.
        """
        with connected(self.server) as conn:  # closing it releases the lock
            conn.autocommit = True
            what = f"dataset {self.dataset!r}" + (f" part {part}" if part else "")
            name = self._lock_name() + (f":{part}" if part else "")
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,))
                if not cur.fetchone()[0]:
                    raise DatasetBusyError(f"another run of {what} (state schema {self.schema!r}) is in progress")
            yield

    def _lock_name(self) -> str:
        return f"clinicflow_dicom_run:{self.schema}:{self.dataset}"

    # ------------------------------------------------------------------ per batch

    def touch(self, keys: list[FileKey], run_id: str) -> dict[FileKey, FileState]:
        """Mark ``keys`` as seen by ``run_id``; return the state of those already known."""
        if not keys:
            return {}
        with self._tx() as cur:
            cur.execute(
                f"""UPDATE {self._s}.files AS f SET seen_run = %s
                    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS k(a, b, c, d)
                    WHERE f.dataset = %s AND f.study_id = k.a AND f.series_id = k.b
                      AND f.instance_id = k.c AND f.file_location = k.d
                    RETURNING f.study_id, f.series_id, f.instance_id, f.file_location,
                              f.status, f.objects, f.csv_row""",
                (run_id, *_columns(keys), self.dataset),
            )
            by_stored = {_stored(k): k for k in keys}
            found = {by_stored[tuple(row[:4])]: FileState(row[4], tuple(row[5] or ()), row[6]) for row in cur}
        return found

    def claim(self, planned: dict[FileKey, list[str]], run_id: str) -> None:
        """Mark files ``uploading`` with their planned objects, before any upload (never downgrades ``done``)."""
        if not planned:
            return
        with self._tx() as cur:
            for key, objects in planned.items():
                cur.execute(
                    f"""INSERT INTO {self._s}.files AS f
                          (dataset, study_id, series_id, instance_id, file_location, status, objects, seen_run)
                        VALUES (%s, %s, %s, %s, %s, 'uploading', %s, %s)
                        ON CONFLICT (dataset, study_id, series_id, instance_id, file_location) DO UPDATE
                          SET status = 'uploading', objects = EXCLUDED.objects, seen_run = EXCLUDED.seen_run,
                              stage = NULL, kind = NULL, reason = NULL, updated_at = now()
                          WHERE f.status <> 'done'""",
                    (self.dataset, *_stored(key), list(objects), run_id),
                )

    def uploaded_objects(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` the upload log already holds."""
        names = list(names)
        if not names:
            return set()
        with self._tx() as cur:
            cur.execute(
                f"SELECT object_name FROM {self._s}.uploads WHERE dataset = %s AND object_name = ANY(%s)",
                (self.dataset, names),
            )
            return {row[0] for row in cur}

    def record_upload(self, name: str, size: int, md5: str, *, uploaded: bool = True) -> None:
        """Log an object as present in the bucket; ``uploaded=False`` when it was found there, not sent."""
        with self._tx() as cur:
            cur.execute(
                f"""INSERT INTO {self._s}.uploads AS u (dataset, object_name, size, md5, upload_count)
                    VALUES (%s, %s, %s, %s, %s)
                    ON CONFLICT (dataset, object_name) DO UPDATE
                      SET size = EXCLUDED.size, md5 = EXCLUDED.md5,
                          upload_count = u.upload_count + EXCLUDED.upload_count,
                          last_uploaded_at = CASE WHEN EXCLUDED.upload_count > 0 THEN now()
                                                  ELSE u.last_uploaded_at END""",
                (self.dataset, name, size, md5, 1 if uploaded else 0),
            )

    def upload_md5(self, name: str) -> str | None:
        with self._tx() as cur:
            cur.execute(
                f"SELECT md5 FROM {self._s}.uploads WHERE dataset = %s AND object_name = %s", (self.dataset, name)
            )
            row = cur.fetchone()
            return row[0] if row else None

    def forget_upload(self, name: str) -> None:
        """Drop an object from the upload log (it was deleted from the bucket)."""
        with self._tx() as cur:
            cur.execute(f"DELETE FROM {self._s}.uploads WHERE dataset = %s AND object_name = %s", (self.dataset, name))

    def mark_done(self, done: list[tuple[FileKey, list[str], dict[str, Any], int, int]], run_id: str) -> None:
        """``(key, objects, csv_row, bytes, jpgs)`` per file: all its objects are in the bucket."""
        if not done:
            return
        with self._tx() as cur:
            for key, objects, csv_row, size, jpgs in done:
                cur.execute(
                    f"""INSERT INTO {self._s}.files AS f
                          (dataset, study_id, series_id, instance_id, file_location, status, objects,
                           csv_row, bytes, jpgs, seen_run)
                        VALUES (%s, %s, %s, %s, %s, 'done', %s, %s, %s, %s, %s)
                        ON CONFLICT (dataset, study_id, series_id, instance_id, file_location) DO UPDATE
                          SET status = 'done', objects = EXCLUDED.objects, csv_row = EXCLUDED.csv_row,
                              bytes = EXCLUDED.bytes, jpgs = EXCLUDED.jpgs, seen_run = EXCLUDED.seen_run,
                              stage = NULL, kind = NULL, reason = NULL, updated_at = now()""",
                    (
                        self.dataset,
                        *_stored(key),
                        list(objects),
                        json.dumps(csv_row, sort_keys=True),
                        size,
                        jpgs,
                        run_id,
                    ),
                )

    def refresh_fields(self, updates: list[tuple[FileKey, dict[str, Any]]]) -> None:
        """Replace the CSV rows of done files whose report fields changed in the source."""
        if not updates:
            return
        with self._tx() as cur:
            for key, csv_row in updates:
                cur.execute(
                    f"""UPDATE {self._s}.files SET csv_row = %s, updated_at = now()
                        WHERE dataset = %s AND study_id = %s AND series_id = %s AND instance_id = %s
                          AND file_location = %s AND status = 'done'""",
                    (json.dumps(csv_row, sort_keys=True), self.dataset, *_stored(key)),
                )

    def record_failures(self, failures: list[Failure], run_id: str) -> None:
        """Failed files: status ``failed`` (unless already done) and a row in ``failures``."""
        if not failures:
            return
        with self._tx() as cur:
            for f in failures:
                cur.execute(
                    f"""INSERT INTO {self._s}.files AS t
                          (dataset, study_id, series_id, instance_id, file_location, status, stage, kind,
                           reason, seen_run)
                        VALUES (%s, %s, %s, %s, %s, 'failed', %s, %s, %s, %s)
                        ON CONFLICT (dataset, study_id, series_id, instance_id, file_location) DO UPDATE
                          SET status = 'failed', objects = '{{}}', csv_row = NULL, stage = EXCLUDED.stage,
                              kind = EXCLUDED.kind, reason = EXCLUDED.reason, seen_run = EXCLUDED.seen_run,
                              updated_at = now()
                          WHERE t.status <> 'done'""",
                    (self.dataset, *_stored(f.key), f.stage, f.kind, f.reason, run_id),
                )
                cur.execute(
                    f"""INSERT INTO {self._s}.failures
                          (dataset, run_id, study_id, series_id, instance_id, file_location, stage, kind, reason)
                        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (self.dataset, run_id, *_stored(f.key), f.stage, f.kind, f.reason),
                )

    def record_source_failure(self, stage: str, kind: str, reason: str, run_id: str) -> None:
        """A failure that belongs to no file key (e.g. report rows with an empty key column)."""
        with self._tx() as cur:
            cur.execute(
                f"""INSERT INTO {self._s}.failures (dataset, run_id, stage, kind, reason)
                            VALUES (%s, %s, %s, %s, %s)""",
                (self.dataset, run_id, stage, kind, reason),
            )

    # ------------------------------------------------------------------ end of run

    def run_failures(self, run_id: str) -> list[dict[str, Any]]:
        with self._tx() as cur:
            cur.execute(
                f"""SELECT study_id, series_id, instance_id, file_location, stage, kind, reason
                    FROM {self._s}.failures WHERE dataset = %s AND run_id = %s
                    ORDER BY study_id COLLATE "C", series_id COLLATE "C", instance_id COLLATE "C",
                             file_location COLLATE "C", id""",
                (self.dataset, run_id),
            )
            names = column_names(cur)
            return [dict(zip(names, row, strict=False)) for row in cur]

    def record_run(self, run_id: str, failed_files: int, failure_threshold: int, failure: str | None) -> None:
        """The run's verdict: ``failed`` with ``failure`` (the flow's message), else ``ok``; a rerun overwrites."""
        with self._tx() as cur:
            cur.execute(
                f"""INSERT INTO {self._s}.runs (dataset, run_id, status, failed_files, failure_threshold, message)
                    VALUES (%s, %s, %s, %s, %s, %s)
                    ON CONFLICT (dataset, run_id) DO UPDATE SET status = EXCLUDED.status,
                        failed_files = EXCLUDED.failed_files, failure_threshold = EXCLUDED.failure_threshold,
                        message = EXCLUDED.message, finished_at = now()""",
                (self.dataset, run_id, "failed" if failure else "ok", failed_files, failure_threshold, failure),
            )

    def write_csv(self, out: io.TextIOBase, report_fields: list[str], run_id: str) -> int:
        """Write the CSV of every done file seen by ``run_id``, in key order; returns data rows.

        Streams through a server-side cursor: memory is one fetch, not the dataset.
        """
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*OUTPUT_COLUMNS, *report_fields])
        count = 0
        with self._tx("clinicflow_dicom_csv") as cur:
            cur.itersize = CSV_FETCH_ROWS
            cur.execute(
                f"""SELECT csv_row FROM {self._s}.files
                    WHERE dataset = %s AND status = 'done' AND seen_run = %s
                    ORDER BY study_id COLLATE "C", series_id COLLATE "C", instance_id COLLATE "C",
                             file_location COLLATE "C"
                """,
                (self.dataset, run_id),
            )
            for (row,) in cur:
                writer.writerow([_cell(row.get(c)) for c in (*OUTPUT_COLUMNS, *report_fields)])
                count += 1
        return count

    def status_counts(self) -> dict[str, int]:
        with self._tx() as cur:
            cur.execute(
                f"SELECT status, count(*) FROM {self._s}.files WHERE dataset = %s GROUP BY status", (self.dataset,)
            )
            return {status: int(n) for status, n in cur}

    def upload_counts(self) -> dict[str, int]:
        """Object name → how many times it was uploaded (for checks and the CLI)."""
        with self._tx() as cur:
            cur.execute(f"SELECT object_name, upload_count FROM {self._s}.uploads WHERE dataset = %s", (self.dataset,))
            return {name: int(n) for name, n in cur}

    def reset(self) -> None:
        """Forget the dataset's progress (the next run starts over; the bucket is untouched)."""
        with self._tx() as cur:
            for table in ("files", "uploads", "failures", "runs"):
                cur.execute(f"DELETE FROM {self._s}.{table} WHERE dataset = %s", (self.dataset,))


def _stored(key: FileKey) -> tuple[str, str, str, str]:
    """The key as the tables keep it: the location without user info or query string (see stored_location)."""
    return (key.study_id, key.series_id, key.instance_id, stored_location(key.file_location))


def _columns(keys: list[FileKey]) -> tuple[list[str], list[str], list[str], list[str]]:
    stored = [_stored(k) for k in keys]
    return ([k[0] for k in stored], [k[1] for k in stored], [k[2] for k in stored], [k[3] for k in stored])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def csv_text_rows(text: str) -> Iterator[list[str]]:
    """Parse CSV text written by :meth:`StateStore.write_csv` (tests, checks)."""
    return csv.reader(io.StringIO(text))
