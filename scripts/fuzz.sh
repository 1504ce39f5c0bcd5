#!/usr/bin/env bash
# Short, bounded fuzz runs of the CSV and zip readers (cargo-fuzz on the nightly toolchain).
# Usage: scripts/fuzz.sh [seconds per target, default 30]. Skipped, with a message, when
# cargo-fuzz or nightly is missing (`cargo install cargo-fuzz`). New corpus entries go to a
# scratch directory, so the committed seeds in fuzz/corpus/ stay as they are; a crash leaves its
# input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
secs="${1:-30}"
cd "$(dirname "$0")/.."
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: skipped (needs cargo-fuzz and the nightly toolchain: cargo install cargo-fuzz)"
    exit 0
fi
# Nightly, sanitizer-instrumented builds get their own target dir.
export CARGO_TARGET_DIR="${SLUICE_FUZZ_TARGET_DIR:-$HOME/.cache/sluice/fuzz-target}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in csv zip; do
    mkdir -p "$scratch/$target"
    echo "fuzz: $target for ${secs}s"
    cargo +nightly fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 | tail -n 12
done
