"""read_ahead: the chunks in order, an error where it happened, a stop before the end closes the source."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from clinicflow.processing.datafiles import read_ahead


def test_chunks_come_in_order_and_are_read_in_another_thread() -> None:
    readers: set[int] = set()

    def chunks() -> Iterator[int]:
        for i in range(50):
            readers.add(threading.get_ident())
            yield i

    assert list(read_ahead(chunks())) == list(range(50))
    assert readers
    assert threading.get_ident() not in readers
    assert list(read_ahead(iter([]))) == []


def test_an_error_reaches_the_caller_after_the_chunks_before_it() -> None:
    def chunks() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("row 3 is bad")

    ahead = read_ahead(chunks())
    assert [next(ahead), next(ahead)] == [1, 2]
    with pytest.raises(ValueError, match="row 3 is bad"):
        next(ahead)


def test_a_stop_before_the_end_closes_the_source_and_reads_at_most_one_more() -> None:
    read: list[int] = []
    closed = threading.Event()

    def chunks() -> Iterator[int]:
        try:
            for i in range(1000):
                read.append(i)
                yield i
        finally:
            closed.set()

    ahead = read_ahead(chunks())
    assert [next(ahead), next(ahead)] == [0, 1]
    ahead.close()
    assert closed.is_set()
    assert read in ([0, 1], [0, 1, 2])  # the next read was cancelled, or had begun and ended
