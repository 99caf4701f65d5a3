# The two set-up commands of a fresh machine (see README):
#   make demo   - seed a demo OpenDental database, run the nightly, DICOM, pipelines and ingestion demos on local
#                 defaults, then serve the processing service until Ctrl-C
#   make test   - lint (ruff), type-check (mypy), layers (lint-imports), then the unit tests (stop at the first failure),
#                 then the integration tests; both on 2 pytest-xdist workers (tests/conftest.py)
.PHONY: demo test bench

demo:
	bash scripts/bootstrap.sh
	uv run --frozen clinicflow demo

# Exit code 5 (no tests collected) fails the target: a stage that runs nothing checks nothing.
PYTEST = uv run --frozen python -m tests.support.run_pytest -n 2 --dist loadgroup

test:
	bash scripts/bootstrap.sh
	uv run --frozen ruff check .
	uv run --frozen ruff format --check .
	uv run --frozen mypy
	uv run --frozen lint-imports
	$(PYTEST) --exitfirst tests/unit
	$(PYTEST) tests/integration

bench:
	bash scripts/bootstrap.sh
	uv run --frozen python -m bench
