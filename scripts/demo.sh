#!/usr/bin/env bash
# The main job on an embedded default: install what is missing, then `sluice demo`, which generates
# a small kline dataset, runs pipelines/klines.yaml over it and queries the lake through DuckDB.
# Extra arguments go to `sluice demo` (e.g. --symbols 5 --days 10 --dir /tmp/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
bash scripts/setup.sh
cargo run --quiet -p sluice-cli -- demo "$@"
