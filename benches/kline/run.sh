#!/usr/bin/env bash
# The DuckDB reference job: Sluice vs DuckDB and Polars on ~1 GB of kline CSV (docs/benchmarks.md).
#
#   bash benches/kline/run.sh --all                # both shapes, plain and zipped: four tables + summary
#   bash benches/kline/run.sh                      # 6 symbols x 14 days, 3 rotating runs each
#   bash benches/kline/run.sh --shape small        # 50 symbols x 30 days: 1,500 files and partitions
#   bash benches/kline/run.sh --scaling --rss-days 7,28   # + 1-worker runs, + peak RSS at other sizes
#   bash benches/kline/run.sh --zip                # zipped day files
#   bash benches/kline/run.sh --days 2 --runs 1    # a quick check
#
# Any flag is passed to bench.py (--help lists them). Builds the release binary, installs the
# python duckdb and polars packages into a venv, generates the data once per size (under $BENCH_DIR,
# default ~/.cache/sluice/bench), and prints Markdown tables (results.json has every number).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
work="${BENCH_DIR:-$HOME/.cache/sluice/bench}"
mkdir -p "$work"
# A private copy of the release build (or $SLUICE_BIN as given).
SLUICE_BIN="$(bash benches/release-bin.sh "$work/sluice")"
if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
fi
"$work/venv/bin/python" -c "import duckdb, polars" 2>/dev/null || "$work/venv/bin/pip" install -q duckdb polars >&2
exec "$work/venv/bin/python" benches/kline/bench.py --bin "$SLUICE_BIN" --work "$work" "$@"
