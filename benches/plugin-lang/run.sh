#!/usr/bin/env bash
# The same handler in Rust and in Python, side by side: the `sluice plugin new` templates (multiply
# a Float64 column by a factor), each built with `sluice plugin build`, run as the one step of a
# pipeline over ROWS rows of CSV (symbol, price, qty) into the lake, against the same pipeline
# with no step. REPS runs each, alternating; prints the median wall time and rows/s.
#   ROWS (default 1000000), REPS (default 3), SLUICE_BIN (default the release build),
#   SLUICE_COMPONENTIZE_PY (default: scripts/componentize-venv.sh), KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/sluice/target}"
sluice="${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}"
rows="${ROWS:-1000000}"
reps="${REPS:-3}"
cpy="${SLUICE_COMPONENTIZE_PY:-$(bash scripts/componentize-venv.sh)}"
work="$(mktemp -d /tmp/sluice-plugin-lang.XXXXXX)"
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$work"' EXIT
cd "$work"
"$sluice" plugin new rs-scale >/dev/null
(cd rs-scale && "$sluice" plugin build --target-dir "$CARGO_TARGET_DIR/wasm" | tail -1)
"$sluice" plugin new py_scale --lang python >/dev/null
(cd py_scale && SLUICE_COMPONENTIZE_PY="$cpy" "$sluice" plugin build | tail -1)
python3 - "$rows" <<'PY'
import random, sys
random.seed(1)
n = int(sys.argv[1])
with open("in.csv", "w") as f:
    f.write("symbol,price,qty\n")
    for i in range(n):
        f.write(f"S{i % 50},{random.uniform(1, 1000):.4f},{i}\n")
PY
pipeline() { # name, steps yaml
  mkdir -p "$1/in" && ln -sf "$work/in.csv" "$1/in/in.csv"
  printf 'pipeline: %s\nsources:\n  s:\n    path: in\n    format:\n      csv:\n        columns: {symbol: utf8, price: float64, qty: int64}\nsteps: %s\nsink: {lake: lake, dataset: d}\n' "$1" "$2" > "$1/p.yaml"
}
pipeline none '[]'
pipeline rust "[{plugin: $work/rs-scale/rs-scale.wasm, config: {column: price, factor: 3}}]"
pipeline python "[{plugin: $work/py_scale/py_scale.wasm, config: {column: price, factor: 3}}]"
# Compile each component once (cached), outside the timings.
"$sluice" plugin inspect rs-scale/rs-scale.wasm >/dev/null
"$sluice" plugin inspect py_scale/py_scale.wasm >/dev/null
for r in $(seq "$reps"); do
  for p in none rust python; do
    rm -rf "$p/lake"
    s=$(date +%s%N)
    (cd "$p" && "$sluice" run p.yaml --workers 1 >/dev/null 2>&1)
    e=$(date +%s%N)
    echo "$p $(((e - s) / 1000000))" >> times.txt
  done
done
python3 - "$rows" <<'PY'
import statistics, sys
rows = int(sys.argv[1])
t = {}
for line in open("times.txt"):
    p, s = line.split()
    t.setdefault(p, []).append(float(s) / 1000)
base = statistics.median(t["none"])
print(f"{rows} rows, median of {len(t['none'])} runs, --workers 1")
for p in ("none", "rust", "python"):
    m = statistics.median(t[p])
    extra = m - base
    if p == "none":
        step = ""
    elif extra < 0.05 * base + 0.02:
        step = "step: within noise of no step"
    else:
        step = f"step adds {extra:.2f} s ({rows / extra / 1e6:.2f} M rows/s)"
    print(f"  {p:<7} {m:6.2f} s  {rows / m / 1e6:5.2f} M rows/s end to end  {step}")
PY
