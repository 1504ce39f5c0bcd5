#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. the committed plugin components are not stale relative to their sources;
#   2. every plugin is rebuilt from source into a scratch directory;
#   3. formatting, the crate boundaries and clippy (-D warnings) for the host and the plugin
#      workspaces;
#   4. all host tests, run against the freshly rebuilt plugins (with Python venvs for the lake's
#      pyarrow/DuckDB reader check);
#   5. the plugins' native unit tests;
#   5b. the Python package: its wheel built and installed in a venv, then pytest (the chain, run
#      and validate, Spark local[2] and Ray Data);
#   5c. plugin authors outside the repository (scripts/plugin-author-check.sh): the SDK crates
#      packaged by `cargo package`, and a Rust and a Python plugin scaffolded, built and tested in a
#      temporary directory against those packages only; the Python SDK's own tests (pytest);
#   6. a short, bounded fuzz run of every fuzz target: the CSV and zip readers, the pipeline YAML,
#      guest IPC output and projection patches (skipped without cargo-fuzz, except under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n==> %s\n' "$*"; }
# Test output is also collected here, for the totals printed at the end.
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

step "committed plugin components match their sources"
cargo xtask plugins check

rebuilt="$CARGO_TARGET_DIR/plugins-rebuilt"
step "rebuilding plugins from source into $rebuilt"
cargo xtask plugins build --out "$rebuilt"

step "cargo fmt --check"
cargo fmt --all --check
(cd plugins && cargo fmt --all --check)

step "crate boundaries (ARCHITECTURE.md)"
bash scripts/boundaries.sh

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
(cd plugins && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/plugins-native" cargo clippy --workspace --all-targets --quiet -- -D warnings)

step "Python readers for the lake check: pyarrow with DuckDB 1.x and 2.x"
SLUICE_PYTHON="$(bash scripts/python-venvs.sh)"
export SLUICE_PYTHON
# moto for the S3 source tests (sluice-testkit MotoServer).
SLUICE_MOTO_PYTHON="$(bash scripts/moto-venv.sh)"
export SLUICE_MOTO_PYTHON
# The Tansu broker for the stream tests (sluice-testkit TansuServer).
SLUICE_TANSU_BIN="$(bash scripts/kafka-venv.sh)"
export SLUICE_TANSU_BIN
# componentize-py (PyPI) for the Python plugins' tests.
SLUICE_COMPONENTIZE_PY="$(bash scripts/componentize-venv.sh)"
export SLUICE_COMPONENTIZE_PY

step "host tests against the rebuilt plugins"
SLUICE_PLUGIN_DIR="$rebuilt" SLUICE_TEST_PLUGIN_DIR="$rebuilt/test" cargo test --workspace 2>&1 | tee -a "$results"

step "plugin unit tests (native)"
(cd plugins && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/plugins-native" cargo test --workspace) 2>&1 | tee -a "$results"

step "the Python package: wheel, venv, pytest (tests/py)"
SLUICE_PY="$(bash scripts/python-package.sh)"
SLUICE_PLUGIN_DIR="$rebuilt" SLUICE_TEST_PLUGIN_DIR="$rebuilt/test" SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice" \
  "$SLUICE_PY" -m pytest -q -p no:cacheprovider -p no:warnings tests/py 2>&1 | tee -a "$results"

step "plugin authors outside the repository: packaged SDK, Rust and Python plugins in a temp dir"
bash scripts/plugin-author-check.sh
"$SLUICE_PY" -m pytest -q -p no:cacheprovider plugins/python/tests 2>&1 | tee -a "$results"

step "fuzz the CSV and zip readers, the pipeline YAML and guest output, ${SLUICE_FUZZ_SECS:-30}s each"
bash scripts/fuzz.sh "${SLUICE_FUZZ_SECS:-30}"

# One closing line over every cargo test run above.
# pytest's closing line ("31 passed, 2 skipped in 60.1s") counts too.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     /^=* ?[0-9]+ (passed|failed|skipped|error).* in [0-9.]+s/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|errors?)/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s }' "$results"
