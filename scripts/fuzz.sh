#!/usr/bin/env bash
# Short, bounded fuzz runs of every target in fuzz/ (the parsers of untrusted input: CSV and zip
# sources, the pipeline YAML, guest IPC output and projection patches).
# Usage: scripts/fuzz.sh [seconds per target, default 30]
#
# Runs on the stable toolchain: cargo-fuzz needs `-Zsanitizer=address`, which RUSTC_BOOTSTRAP=1
# allows (the sanitizer runtime ships with rustup's rust-std); libFuzzer is built from source by
# libfuzzer-sys with the system C++ compiler. cargo-fuzz comes from `scripts/setup.sh --fuzz`.
# Without it the run is skipped with a message, except under CI=true, where that fails.
#
# All targets are built once, then each runs for the given time from its seeds in
# fuzz/corpus/<target>/ (new corpus entries go to a scratch directory, so the committed seeds stay
# as they are). libFuzzer's final stats are printed per target; a crash, a leak or an input slower
# than 10 s leaves its input in fuzz/artifacts/<target>/ and fails the script (after the other
# targets have run).
set -euo pipefail
secs="${1:-30}"
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "fuzz: cargo-fuzz is missing (scripts/setup.sh --fuzz installs it); CI must fuzz" >&2
        exit 1
    fi
    echo "fuzz: skipped (needs cargo-fuzz: scripts/setup.sh --fuzz, or cargo install cargo-fuzz --locked)"
    exit 0
fi
export RUSTC_BOOTSTRAP=1
# Sanitizer-instrumented builds get their own target dir.
export CARGO_TARGET_DIR="${SLUICE_FUZZ_TARGET_DIR:-$HOME/.cache/sluice/fuzz-target}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

mapfile -t targets < <(cargo fuzz list)
[ "${#targets[@]}" -gt 0 ] || { echo "fuzz: no targets in fuzz/Cargo.toml" >&2; exit 1; }
echo "fuzz: building ${targets[*]} ($(rustc --version), RUSTC_BOOTSTRAP=1, AddressSanitizer)"
start=$SECONDS
cargo fuzz build
echo "fuzz: built in $((SECONDS - start))s"

failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    echo "fuzz: $target for ${secs}s"
    if cargo fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        >"$log" 2>&1; then
        grep -E '^(stat::|Done )' "$log" || true
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        if [ -z "$execs" ] || [ "$execs" -eq 0 ]; then
            tail -n 20 "$log"
            echo "fuzz: $target ran no inputs" >&2
            failed+=("$target")
        fi
    else
        # The crash report: the panic or sanitizer message, the end of the stack, the input.
        grep -m1 -A6 -E 'panicked at|panic escaped|==[0-9]+==ERROR|^==[0-9]+== ERROR' "$log" || true
        tail -n 40 "$log"
        echo "fuzz: $target FAILED (the input is in fuzz/artifacts/$target/)" >&2
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"
