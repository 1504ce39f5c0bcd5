#!/usr/bin/env bash
# The kline reference job on Spark local[2]: Spark's window functions vs Spark + the Sluice chain
# (mapInArrow) vs `sluice run` (docs/benchmarks.md, "Spark and the chain").
#
#   bash benches/spark/run.sh                 # 6 symbols x 4 days, 2 rotating runs
#   bash benches/spark/run.sh --days 1 --runs 1
#
# Builds the release binary and a release wheel (installed in the package's venv, see
# scripts/python-package.sh), generates the data once under $BENCH_DIR (default
# ~/.cache/sluice/bench) and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
work="${BENCH_DIR:-$HOME/.cache/sluice/bench}"
mkdir -p "$work"
# A private copy of the release build (or $SLUICE_BIN as given).
SLUICE_BIN="$(bash benches/release-bin.sh "$work/sluice")"
py="$(bash scripts/python-package.sh --release)"
exec "$py" benches/spark/bench.py --bin "$SLUICE_BIN" --python "$py" --work "$work" "$@"
