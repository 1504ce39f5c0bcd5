#!/usr/bin/env bash
# Peak RSS of `sluice run` as one CSV file grows (default 100 MB, 500 MB, 2000 MB): reading and
# writing are streamed, so peak memory should stay flat. Prints a Markdown table row per size.
# Usage: scripts/bench-rss.sh [MB ...]   (SLUICE_BIN overrides the binary; default: a release
# build in $CARGO_TARGET_DIR, built if missing). Needs GNU time (/usr/bin/time) and ~3x the
# largest size in free space under ${BENCH_DIR:-/tmp/sluice-bench-rss}.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(100 500 2000)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
bin="${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}"
if [ ! -x "$bin" ]; then
    cargo build --release -p sluice-cli
fi
work="${BENCH_DIR:-/tmp/sluice-bench-rss}"
rm -rf "$work"
mkdir -p "$work/in"
trap 'rm -rf "$work"' EXIT
cat > "$work/klines.yaml" <<'YAML'
pipeline: rss
sources:
  klines:
    path: in
    glob: "*.csv"
    format:
      csv:
        header: false
        columns: {open_time: int64, open: float64, high: float64, low: float64, close: float64,
                  volume: float64, close_time: int64, quote_volume: float64, trades: int64,
                  taker_buy_base: float64, taker_buy_quote: float64, ignore: int64}
steps: []
sink: {lake: lake, dataset: klines}
settings: {workers: 1}
YAML
# A kline-shaped line is ~100 bytes; generate by repeating a 1 MB block with rising timestamps.
python3 - "$work/block.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    t = 1735689600000
    out = []
    size = 0
    i = 0
    while size < 1 << 20:
        p = 42000 + (i % 1000) * 0.01
        line = f"{t + i * 1000},{p:.2f},{p + 1.5:.2f},{p - 1.5:.2f},{p:.2f},{(i % 97) * 0.013:.5f},{t + i * 1000 + 999},{(i % 89) * 13.7:.4f},{i % 50},{(i % 31) * 0.007:.5f},{(i % 43) * 7.1:.4f},0\n"
        out.append(line)
        size += len(line)
        i += 1
    f.write("".join(out))
PY
echo "| input | rows | wall time | MB/s | peak RSS |"
echo "|---|---|---|---|---|"
for mb in "${sizes[@]}"; do
    rm -rf "$work/lake" "$work/in"/*
    for _ in $(seq "$mb"); do cat "$work/block.csv"; done > "$work/in/klines.csv"
    /usr/bin/time -f "%M %e" -o "$work/time.txt" "$bin" run "$work/klines.yaml" --summary-json "$work/summary.json" > /dev/null 2>&1
    read -r rss secs < "$work/time.txt"
    rows=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows_written'])" "$work/summary.json")
    mbps=$(python3 -c "print(f'{$mb * 1.048576 / $secs:.0f}')")
    echo "| ${mb} MiB | ${rows} | ${secs} s | ${mbps} | $((rss / 1024)) MiB |"
done
