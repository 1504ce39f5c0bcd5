#!/usr/bin/env bash
# The `sluice` binary a benchmark runs, printed on stdout: $SLUICE_BIN when set, else the release
# build (built now, in $CARGO_TARGET_DIR, default ~/.cache/sluice/target). With a path argument,
# the release build is copied there first: a private copy, since the shared target directory's
# binary may be rebuilt by another checkout while a long benchmark runs.
#
#   SLUICE_BIN="$(bash benches/release-bin.sh)"
#   SLUICE_BIN="$(bash benches/release-bin.sh "$work/sluice")"
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SLUICE_BIN:-}" ]; then
  echo "$SLUICE_BIN"
  exit 0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
cargo build --release -q -p sluice-cli >&2
bin="$CARGO_TARGET_DIR/release/sluice"
if [ -n "${1:-}" ]; then
  cp "$bin" "$1"
  bin="$1"
fi
echo "$bin"
