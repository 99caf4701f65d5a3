"""Streaming rows into PostgreSQL's COPY FROM STDIN: a background reader and the file object copy_expert reads.
"""
from __future__ import annotations

from typing import Any

# Rows fetched from the MySQL stream per read; bounds client memory together
# with COPY_READ_SIZE (about 2 MB per read for typical OpenDental rows).
FETCH_ROWS = 2000


COPY_READ_SIZE = 1 << 20


class LineReader:
    """Reads COPY lines from an executed MySQL unbuffered cursor in a background thread.

    Why a thread: ``copy_expert`` alternates between reading its source and
    sending to PostgreSQL; done in one thread, MySQL and PostgreSQL wait for
    each other (measured: 7.2 s vs 5.2 s for 1M rows). The thread fetches
    blocks of at most ``block_rows`` rows into a queue ``depth`` blocks deep,
    so memory stays bounded by a few blocks whatever the table size.

    Rows are (copy line, keyset values...). With ``segment_rows`` blocks never
    straddle a multiple of it, so a consumer can stop exactly at a segment end.
    """

    _END = object()

    def __init__(self, cursor: Any, *, block_rows: int = FETCH_ROWS, segment_rows: int | None = None,
                 depth: int = 4) -> None:
        import queue
        import threading

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

    def _run(self) -> None:
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
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def next_block(self) -> tuple[bytes, int, tuple[Any, ...]] | None:
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
        block: tuple[bytes, int, tuple[Any, ...]] = item
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
        self.last_keyset = keyset
        return data

    readline = read
