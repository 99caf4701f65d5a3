# syntax=docker/dockerfile:1.7
# clinicflow image: the flows, their dependencies exactly as locked in uv.lock,
# run as a non-root user. The same image serves the Prefect worker's flow-run
# Jobs (`prefect flow-run execute`, given as args by the worker), the CronJob
# fallback (`clinicflow nightly`) and the worker Deployment (`prefect worker start`).
#
# Base images are pinned to exact tags; pin them by digest in your registry
# mirror if your policy requires it (`--build-arg PYTHON_IMAGE=python@sha256:...`).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- build: resolve nothing, install exactly what uv.lock says ----------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first (their own layer: code changes do not reinstall them).
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# Then the project itself. Installed editable, so /app holds the code that
# Prefect's entrypoints (flows/<file>.py:<flow>) are loaded from.
COPY clinicflow/ ./clinicflow/
COPY blocks/ ./blocks/
COPY flows/ ./flows/
COPY tasks/ ./tasks/
COPY pipelines/ ./pipelines/
COPY tables.yml prefect.yaml ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# ---- runtime: no compiler, no uv, no root ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# The MariaDB command-line client: the fast reader of encoded rows for the
# replication and the load (clinicflow/connectors/mysql/client.py); without it clinicflow
# falls back to pymysql, which costs more CPU per row. Tesseract with its English data: the OCR of
# scanned documents in the ingestion (clinicflow/ingest/text.py); jbig2dec: pypdf decodes the JBIG2
# images of scanned PDFs (what office scanners write) with it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends mariadb-client tesseract-ocr tesseract-ocr-eng jbig2dec \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 clinicflow \
 && useradd --system --uid 10001 --gid clinicflow --home-dir /home/clinicflow --create-home --shell /usr/sbin/nologin clinicflow \
 && mkdir -p /home/clinicflow/.prefect \
 && chown -R clinicflow:clinicflow /home/clinicflow
COPY --from=build --chown=root:root /app /app
# The library's `clinicflow` loggers reach the flow runs' logs (flows/runtime.py RUN_LOG_ENV).
# PREFECT_HOME must be writable: the embedded server of the CronJob path keeps
# its SQLite database there. In Kubernetes it is an emptyDir (read-only root FS).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PREFECT_HOME=/home/clinicflow/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_UI_ENABLED=false \
    PREFECT_LOGGING_EXTRA_LOGGERS=clinicflow \
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW=ignore
WORKDIR /app
USER 10001:10001
# No ENTRYPOINT: the Prefect worker passes the full command as container args.
CMD ["clinicflow", "--help"]
