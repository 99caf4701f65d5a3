# The two set-up commands of a fresh machine (see README):
#   make demo   - seed a demo OpenDental database and run the nightly job on local defaults
#   make test   - lint (ruff), type-check (mypy), then run the test suite
.PHONY: demo test bench

demo:
	bash scripts/bootstrap.sh
	uv run --frozen clinicflow demo

test:
	bash scripts/bootstrap.sh
	uv run --frozen ruff check .
	uv run --frozen mypy
	uv run --frozen lint-imports
	uv run --frozen pytest

bench:
	bash scripts/bootstrap.sh
	uv run --frozen python -m bench
