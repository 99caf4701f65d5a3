#!/usr/bin/env bash
# Prepare a machine for clinicflow: services up, system tools, Python env from the lock file.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. Local MariaDB and PostgreSQL (the machine's own services; started if they stopped).
if ! mariadb -uroot -e 'select 1' >/dev/null 2>&1; then
  log "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  for _ in $(seq 1 60); do mariadb -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break; sleep 1; done
fi

# 2. System tools used by tests and benches: DCMTK (reference DICOM converter),
#    pgloader (load bench anchor), chromium (the results page's browser test,
#    driven by Playwright), Tesseract with its English data (OCR of scanned
#    documents in the ingestion), jbig2dec (the JBIG2 images of scanned PDFs,
#    which pypdf decodes with it), bubblewrap (the custom-script sandbox,
#    docs/processing.md). Installed from Debian's packages when missing.
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v dcmj2pnm >/dev/null 2>&1 || missing+=(dcmtk)
command -v pgloader >/dev/null 2>&1 || missing+=(pgloader)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
command -v jbig2dec >/dev/null 2>&1 || missing+=(jbig2dec)
[ -e /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] || ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 || missing+=(tesseract-ocr-eng)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/tmp/clinicflow-apt.log 2>&1 \
      || log "apt-get install ${missing[*]} failed (see /tmp/clinicflow-apt.log); tests needing them will say so"
  else
    log "not root: install ${missing[*]} yourself for the DICOM reference tests and benches"
  fi
fi

# 3. Python environment exactly as locked.
if ! command -v uv >/dev/null 2>&1; then
  log "installing uv"
  python3 -m pip install -q uv
fi
# --compile-bytecode: Python's .pyc files, written once here. Where
# PYTHONDONTWRITEBYTECODE is set (as on CI machines) every process would
# otherwise compile Prefect from source again, and the embedded server would
# start several times slower (figures: bench/results/notes-from-comments.md).
# (The image does the same with UV_COMPILE_BYTECODE=1.) A no-op when up to date.
uv sync --frozen --quiet --compile-bytecode
