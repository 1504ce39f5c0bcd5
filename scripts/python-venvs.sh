#!/usr/bin/env bash
# Two Python venvs for the lake reader checks (tests/e2e/python_readers.rs, tests/e2e/delta.rs): pyarrow with DuckDB
# 1.x, and pyarrow with DuckDB 2.x and Polars, under ~/.cache/sluice/venv. Idempotent. Prints the value for
# SLUICE_PYTHON (the two interpreters, colon-separated).
set -euo pipefail
root="${SLUICE_VENV_DIR:-$HOME/.cache/sluice/venv}"
make() { # name, duckdb requirement, more packages
  local dir="$root/$1"
  local imports="duckdb, pyarrow${4:+, $4}"
  if ! "$dir/bin/python" -c "import $imports" 2>/dev/null; then
    python3 -m venv "$dir" >&2
    "$dir/bin/pip" install -q "$2" pyarrow ${3:-} >&2
  fi
}
make d1 'duckdb>=1.1,<2'
# Polars for the glob reader check (tests/python/glob_readers.py); deltalake, Polars and pyspark
# (Spark reads a Delta snapshot's files; Java comes with the machine) for the Delta table checks
# (tests/python/check_delta.py, spark_delta_files.py).
make d2 'duckdb>=2,<3' 'polars>=1.20 deltalake==1.6.6 pyspark==3.5.9' 'polars, deltalake, pyspark'
echo "$root/d1/bin/python:$root/d2/bin/python"
