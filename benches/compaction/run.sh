#!/usr/bin/env bash
# Compaction: `sluice watch` ingests N small CSV files (10 rows each, 4 partitions), then
# `sluice lake compact` runs beside the still-running watch. Before and after: live files, one
# catalog publish (`sluice lake publish`), and a full-scan query through the catalog
# (`sluice query`: DuckDB reads every live file). Prints a markdown table.
#
#   bash benches/compaction/run.sh [--files 10000] [--runs 3]
#
# Data and lake live under $BENCH_DIR (default ~/.cache/sluice/bench/compaction), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=10000 runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --files) files=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
SLUICE_BIN="$(bash benches/release-bin.sh)"
S="$SLUICE_BIN"
work="${BENCH_DIR:-$HOME/.cache/sluice/bench/compaction}"
rm -rf "$work"; mkdir -p "$work/in"
trap 'kill $watch 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/p.yaml" <<YAML
pipeline: small
sources:
  s:
    path: in
    glob: "*.csv"
    fields: "{g}-{n}.csv"
    format:
      csv: {header: true, columns: {id: int64, v: float64}}
    ready: renamed
steps:
  - plugin: passthrough
sink: {lake: lake, dataset: t, partition_by: [g]}
YAML
ms() { date +%s%3N; }
# Median of a command's wall time in ms over $runs runs.
median_ms() {
  local t=() i s
  for ((i = 0; i < runs; i++)); do s=$(ms); "$@" >/dev/null; t+=($(($(ms) - s))); done
  printf '%s\n' "${t[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p"
}
"$S" -q watch "$work/p.yaml" 2>"$work/watch.log" &
watch=$!
start=$(ms)
python3 - "$work/in" "$files" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for k in range(n):
    rows = "".join(f"{k * 10 + i},{(k * 10 + i) / 4}\n" for i in range(10))
    tmp = os.path.join(d, f".{k}.tmp")
    with open(tmp, "w") as f:
        f.write("id,v\n" + rows)
    os.rename(tmp, os.path.join(d, f"g{k % 4}-{k:06}.csv"))
PY
want=$((files * 10))
scan="SELECT count(*) AS n, sum(id) AS s, sum(v) AS sv FROM t"
until [ "$("$S" query --lake "$work/lake" --format csv "SELECT count(*) FROM t" 2>/dev/null | tail -1)" = "$want" ]; do
  sleep 1
  kill -0 $watch || { tail "$work/watch.log"; exit 1; }
done
ingest=$(($(ms) - start))
live() { find "$work/lake/t" -name '*.parquet' | wc -l; }
before_files=$(live)
before_publish=$(median_ms "$S" lake publish "$work/lake")
before_scan=$(median_ms "$S" query --lake "$work/lake" "$scan")
before_answer=$("$S" query --lake "$work/lake" --format csv "$scan" | tail -1)
s=$(ms)
"$S" lake compact "$work/lake" > "$work/compact.txt"
compact=$(($(ms) - s))
after_files=$(live)
after_publish=$(median_ms "$S" lake publish "$work/lake")
after_scan=$(median_ms "$S" query --lake "$work/lake" "$scan")
after_answer=$("$S" query --lake "$work/lake" --format csv "$scan" | tail -1)
kill -TERM $watch; wait $watch || true
[ "$before_answer" = "$after_answer" ] || { echo "answers differ: $before_answer vs $after_answer" >&2; exit 1; }
"$S" lake verify "$work/lake" >/dev/null
echo "watch ingested $files files ($want rows) in $((ingest / 1000)) s; compaction beside the watch: $compact ms"
cat "$work/compact.txt"
echo
echo "| | live files | catalog publish (median of $runs) | full scan through the catalog (median of $runs) |"
echo "|---|---|---|---|"
echo "| after ingest | $before_files | $before_publish ms | $before_scan ms |"
echo "| after \`sluice lake compact\` | $after_files | $after_publish ms | $after_scan ms |"
echo "answer (both): $after_answer"
