#!/usr/bin/env bash
# Developer entry point: installs the project from its own files (Poetry + poetry.lock) and runs it.
#
#   bash scripts/dev.sh pipeline [args]   the main job end to end, replayed over a fixed window of the simulated
#                                          market into demo/ (paper; trades on any date): scripts/demo.py
#   bash scripts/dev.sh test [pytest args] the test suite (the command CI runs), one worker per core (-n 0: serial)
#   bash scripts/dev.sh lint               ruff + mypy + `poetry check --lock`
#   bash scripts/dev.sh bench              benchmarks (tests/bench)
#   bash scripts/dev.sh install            only (re)install
#
# Needs only a Python 3.12 interpreter (pyenv's is found automatically). Poetry itself is installed
# into .tools/ on first use; the project's venv is .venv/ (poetry.toml: virtualenvs.in-project).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python312() {
  local candidate
  for candidate in "${COINBOT_PYTHON:-}" python3.12 "$(command -v pyenv >/dev/null 2>&1 && pyenv root)/versions/3.12"*/bin/python3.12; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      return 0
    fi
  done
  echo "error: no Python 3.12 found (set COINBOT_PYTHON=/path/to/python3.12)" >&2
  return 1
}

# Poetry's default source uses PyPI's JSON API, which some mirrors/pull-through caches do not serve;
# the plugin below makes Poetry use the same simple index pip uses. Derived at run time, never committed.
pip_index_url() {
  if [ -n "${PIP_INDEX_URL:-}" ]; then echo "$PIP_INDEX_URL"; return; fi
  local configured
  configured=$("$PY" -m pip config get global.index-url 2>/dev/null || true)
  if [ -n "$configured" ]; then echo "$configured"; return; fi
  "$PY" -c "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"
}

ensure_installed() {
  PY=$(find_python312)
  if [ ! -x .tools/bin/poetry ]; then
    echo "[dev] installing Poetry into .tools/ ..." >&2
    "$PY" -m venv .tools
    .tools/bin/pip install --quiet "poetry==2.5.1" "poetry-plugin-pypi-mirror==0.6.5"
  fi
  export POETRY_PYPI_MIRROR_URL="${POETRY_PYPI_MIRROR_URL:-$(pip_index_url)}"
  export POETRY_VIRTUALENVS_IN_PROJECT=true
  local stamp=.venv/.coinbot-installed
  if [ ! -f "$stamp" ] || [ poetry.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[dev] installing dependencies from poetry.lock into .venv/ ..." >&2
    .tools/bin/poetry env use "$PY" >/dev/null
    .tools/bin/poetry install --compile --no-interaction >&2
    touch "$stamp"
  fi
}

command=${1:-help}
shift || true
case "$command" in
  install)  ensure_installed ;;
  pipeline) ensure_installed; exec .venv/bin/python -m scripts.demo "$@" ;;
  test)     ensure_installed; exec .venv/bin/python -m pytest -n auto --dist loadfile "$@" ;;
  lint)     ensure_installed
            .tools/bin/poetry check --lock
            .venv/bin/ruff check lib scripts tests
            .venv/bin/mypy lib scripts ;;
  bench)    ensure_installed; exec .venv/bin/python -m pytest tests/bench -m bench -p no:cacheprovider "$@" ;;
  *)        sed -n '2,13p' "$0"; exit 2 ;;
esac
