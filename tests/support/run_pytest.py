"""``python -m tests.support.run_pytest ARGS``: pytest, with exit code 5 (no tests collected) turned into 1,
and the number of tests collected printed, so a stage of ``make test`` that runs nothing fails."""

from __future__ import annotations

import sys

import pytest


class _Count:
    collected = 0

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected = len(session.items)

    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        self.collected = len(ids)  # under xdist every worker collects the same tests; the controller none


def main(argv: list[str]) -> int:
    count = _Count()
    code = int(pytest.main(argv, plugins=[count]))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("pytest collected no tests: failing", file=sys.stderr)
        return 1
    print(f"tests collected: {count.collected}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
