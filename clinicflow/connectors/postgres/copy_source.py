"""Streaming rows into PostgreSQL's COPY FROM STDIN: a background reader and the file object copy_expert reads."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from clinicflow.core.dbapi import Cursor

# Rows fetched from the MySQL stream per read; bounds client memory together
# with COPY_READ_SIZE (about 2 MB per read for typical OpenDental rows).
FETCH_ROWS = 2000


COPY_READ_SIZE = 1 << 20


class LineReader:
    """Reads COPY lines from an executed MySQL unbuffered cursor in a background thread.

    Why a thread: ``copy_expert`` alternates between reading its source and
    sending to PostgreSQL; done in one thread, MySQL and PostgreSQL wait for
    each other (figures: bench/results/notes-from-comments.md). The thread fetches
    blocks of at most ``block_rows`` rows into a queue ``depth`` blocks deep,
    so memory stays bounded by a few blocks whatever the table size.

    Rows are (copy line, keyset values...). With ``segment_rows`` blocks never
    straddle a multiple of it, so a consumer can stop exactly at a segment end.

    With ``row_pieces`` (rows holding large values) rows are fetched one at a time and
    turned into byte pieces; blocks are cut at ``block_bytes``, possibly inside a row (such a
    block counts no row and carries no keyset), so memory is bounded by bytes, not rows.
    Keyset values then start at ``key_start``; ``row_pieces`` may raise ``read_error(last row,
    exception)`` for a failed read.
    """

    _END = object()

    def __init__(
        self,
        cursor: Cursor,
        *,
        block_rows: int = FETCH_ROWS,
        segment_rows: int | None = None,
        depth: int = 4,
        row_pieces: Callable[[Sequence[Any]], Iterable[bytes]] | None = None,
        key_start: int = 1,
        block_bytes: int = COPY_READ_SIZE,
        read_error: Callable[[Sequence[Any] | None, BaseException], BaseException] | None = None,
    ) -> None:
        import queue
        import threading

        self._row_pieces = row_pieces
        self._key_start = key_start
        self._block_bytes = block_bytes
        self._read_error = read_error
        self._cursor = cursor
        self._block_rows = block_rows
        self._segment_rows = segment_rows
        self._queue: Any = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.finished = False
        self._thread = threading.Thread(target=self._run, name="clinicflow-mysql-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run_pieces(self) -> None:
        assert self._row_pieces is not None
        fetched, rows, size = 0, 0, 0
        parts: list[bytes] = []
        last: Sequence[Any] | None = None
        while not self._stop.is_set():
            try:
                row = self._cursor.fetchone()
            except Exception as exc:
                raise (self._read_error(last, exc) if self._read_error else exc) from exc
            if row is None:
                break
            for piece in self._row_pieces(row):
                parts.append(piece)
                size += len(piece)
                if size >= self._block_bytes:
                    done = tuple(last[self._key_start :]) if rows and last is not None else None
                    if not self._put((b"".join(parts), rows, done)):
                        return
                    parts, rows, size = [], 0, 0
            parts.append(b"\n")
            size += 1
            rows += 1
            fetched += 1
            last = row
            segment_end = bool(self._segment_rows) and fetched % (self._segment_rows or 1) == 0
            if size >= self._block_bytes or segment_end:
                if not self._put((b"".join(parts), rows, tuple(row[self._key_start :]))):
                    return
                parts, rows, size = [], 0, 0
        if parts and not self._put((b"".join(parts), rows, tuple(last[self._key_start :]) if last else None)):
            return
        self._put(self._END)

    def _run(self) -> None:
        if self._row_pieces is not None:
            try:
                self._run_pieces()
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                self._put(exc)
            return
        fetched = 0
        try:
            while not self._stop.is_set():
                want = self._block_rows
                if self._segment_rows:
                    want = min(want, self._segment_rows - fetched % self._segment_rows)
                rows = self._cursor.fetchmany(want)
                if not rows:
                    break
                fetched += len(rows)
                data = b"\n".join([r[0] for r in rows]) + b"\n"
                if not self._put((data, len(rows), tuple(rows[-1][1:]))):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(exc)

    def next_block(self) -> tuple[bytes, int, tuple[Any, ...] | None] | None:
        """The next (data, rows, last row's keyset values), or None at the end of the result."""
        if self.finished:
            return None
        item = self._queue.get()
        if item is self._END:
            self.finished = True
            self._thread.join()
            return None
        if isinstance(item, BaseException):
            self.finished = True
            raise item
        block: tuple[bytes, int, tuple[Any, ...] | None] = item
        return block

    def close(self) -> None:
        """Stop the thread (after an error on the PostgreSQL side); the caller then closes the connection."""
        self._stop.set()
        self._thread.join(timeout=10)


class CopySource:
    """The file object ``copy_expert`` reads: blocks from a :class:`LineReader`, up to ``limit`` rows."""

    def __init__(self, reader: LineReader, limit: int | None = None) -> None:
        self._reader = reader
        self._limit = limit
        self.rows = 0
        self.bytes = 0
        self.last_keyset: tuple[Any, ...] | None = None

    def read(self, size: int = -1) -> bytes:
        if self._limit is not None and self.rows >= self._limit:
            return b""
        block = self._reader.next_block()
        if block is None:
            return b""
        data, rows, keyset = block
        self.rows += rows
        self.bytes += len(data)
        if keyset is not None:
            self.last_keyset = keyset
        return data

    readline = read
