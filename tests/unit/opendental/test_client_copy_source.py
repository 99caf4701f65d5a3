"""ClientCopySource: COPY data is every line of the client's output but the last (the counters)."""

from __future__ import annotations

import random

import pytest

from clinicflow.opendental.warehouse.copy_stream import ClientCopySource


class _Output:
    """The client's stdout, handed out in blocks of random sizes (as a pipe does)."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data, self._pos, self._rng = data, 0, random.Random(seed)

    def read1(self, size: int) -> bytes:
        n = min(size, self._rng.randint(1, 40))
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


class _Export:
    def __init__(self, data: bytes, seed: int, error: Exception | None = None) -> None:
        self.stdout = _Output(data, seed)
        self._error = error

    def finish(self) -> None:
        if self._error is not None:
            raise self._error


def _drain(source: ClientCopySource) -> bytes:
    chunks = []
    while chunk := source.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("lines", [0, 1, 2, 57])
@pytest.mark.parametrize("seed", range(5))
def test_data_lines_pass_and_the_counters_line_is_kept_back(lines: int, seed: int) -> None:
    data = b"".join(f"{i}\tvalue {i}\t\\N\n".encode() for i in range(lines))
    source = ClientCopySource(_Export(data + b"cf-counters,3,0\n", seed))
    assert _drain(source) == data
    assert source.rows == lines
    assert source.bytes == len(data)
    assert source.counters_line == b"cf-counters,3,0"


def test_a_failed_client_raises_from_read_so_copy_is_aborted() -> None:
    source = ClientCopySource(_Export(b"1\ta\n2\tb\n", 0, error=ConnectionResetError("lost")))
    with pytest.raises(ConnectionResetError):
        _drain(source)
