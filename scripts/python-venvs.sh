#!/usr/bin/env bash
# Two Python venvs for the lake reader check (tests/e2e/python_readers.rs): pyarrow with DuckDB
# 1.x, and pyarrow with DuckDB 2.x, under ~/.cache/sluice/venv. Idempotent. Prints the value for
# SLUICE_PYTHON (the two interpreters, colon-separated).
set -euo pipefail
root="${SLUICE_VENV_DIR:-$HOME/.cache/sluice/venv}"
make() { # name, duckdb requirement
  local dir="$root/$1"
  if ! "$dir/bin/python" -c 'import duckdb, pyarrow' 2>/dev/null; then
    python3 -m venv "$dir" >&2
    "$dir/bin/pip" install -q "$2" pyarrow >&2
  fi
}
make d1 'duckdb>=1.1,<2'
make d2 'duckdb>=2,<3'
echo "$root/d1/bin/python:$root/d2/bin/python"
