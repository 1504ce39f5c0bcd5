#!/usr/bin/env bash
# The S3 listing source against the same work done in two steps: on a local S3 server (moto,
# seeded with N kline zips and their .CHECKSUM files), `sluice run` of a `kind: s3` pipeline
# (list, fetch into a mirror, check, clean into a lake) against a parallel `curl` of the same
# objects (`xargs -P`, as many as the source's download concurrency) followed by `sluice run` of
# the same pipeline with a directory source over what curl fetched. Reports wall time, files/s,
# MB/s and peak RSS, at two sizes, so that RSS can be seen to stay flat as objects grow.
#
#   bash benches/s3/run.sh [--files 100,400] [--rows 20000] [--concurrency 4] [--runs 3]
#
# Needs the moto venv (scripts/moto-venv.sh). Work lives under $BENCH_DIR (default
# ~/.cache/sluice/bench/s3), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=100,400 rows=20000 conc=4 runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --files) sizes=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
SLUICE_BIN="$(bash benches/release-bin.sh)"
S="$SLUICE_BIN"
PY="${SLUICE_MOTO_PYTHON:-$(bash scripts/moto-venv.sh)}"
work="${BENCH_DIR:-$HOME/.cache/sluice/bench/s3}"
rm -rf "$work"; mkdir -p "$work"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

columns='{open_time: int64, open: float64, high: float64, low: float64, close: float64, volume: float64, close_time: int64, quote_volume: float64, trades: int64, taker_buy_base: float64, taker_buy_quote: float64, ignore: utf8}'
pipeline() { # file, source lines
  cat > "$1" <<YAML
pipeline: klines
sources:
  klines:
$2
    glob: "*/1s/*.zip"
    fields: "{symbol}-1s-{date:date}.zip"
    format:
      csv: {header: false, columns: $columns}
steps:
  - plugin: select
    config: {drop: [ignore]}
sink: {lake: lake, dataset: klines, partition_by: [symbol, date]}
YAML
}
# Wall ms and peak RSS (KiB) of a command, as "ms kib".
measure() {
  local s e
  s=$(date +%s%3N)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  e=$(date +%s%3N)
  echo "$((e - s)) $(cat "$work/rss")"
}
median() { sort -n | sed -n "$(((runs + 1) / 2))p"; }

echo "| objects | MB | way | wall (median of $runs) | files/s | MB/s | peak RSS |"
echo "|---|---|---|---|---|---|---|"
IFS=, read -ra ns <<< "$sizes"
for n in "${ns[@]}"; do
  symbols=$(( n < 10 ? n : 10 )); days=$(( (n + symbols - 1) / symbols ))
  gen="$work/gen-$n"
  "$S" bench generate --out "$gen" --symbols "$symbols" --days "$days" --rows-per-day "$rows" --zip >/dev/null 2>&1
  rm -f "$gen/manifest.json"
  exec {to_server}> >(exec "$PY" benches/s3/serve.py "$gen" bench-data > "$work/port" 2>"$work/server.log")
  server=$!
  until [ -s "$work/port" ]; do sleep 0.2; done
  port=$(cat "$work/port"); rm -f "$work/port"
  endpoint="http://127.0.0.1:$port"
  count=$(wc -l < "$gen/keys.txt")
  mb=$(du -sbc "$gen"/*/ | tail -1 | awk '{printf "%.1f", $1 / 1048576}')
  a=(); b=(); brss=(); arss=()
  for ((r = 0; r < runs; r++)); do
    # One step: list, fetch, check and clean.
    d="$work/one"; rm -rf "$d"; mkdir -p "$d"
    pipeline "$d/p.yaml" "    kind: s3
    endpoint: $endpoint
    allow_http: true
    bucket: bench-data
    prefix: data/spot/daily/klines/
    mirror: mirror
    download: {concurrency: $conc}"
    read -r ms kib < <(measure "$S" -q run "$d/p.yaml")
    a+=("$ms"); arss+=("$kib")
    # Two steps: curl every object (and its checksum), then a directory run.
    d="$work/two"; rm -rf "$d"; mkdir -p "$d/mirror"
    pipeline "$d/p.yaml" "    path: mirror/data/spot/daily/klines"
    s=$(date +%s%3N)
    sed 'p; s/$/.CHECKSUM/' "$gen/keys.txt" |
      (cd "$d/mirror" && xargs -P "$conc" -I{} curl -sf --create-dirs -o {} "$endpoint/bench-data/{}")
    read -r ms kib < <(measure "$S" -q run "$d/p.yaml")
    b+=($(( $(date +%s%3N) - s ))); brss+=("$kib")
    # Same rows either way.
    one=$("$S" query --lake "$work/one/lake" --format csv "SELECT count(*), sum(open_time), round(sum(close)) FROM klines" | tail -1)
    two=$("$S" query --lake "$work/two/lake" --format csv "SELECT count(*), sum(open_time), round(sum(close)) FROM klines" | tail -1)
    [ "$one" = "$two" ] || { echo "results differ: $one vs $two" >&2; exit 1; }
  done
  am=$(printf '%s\n' "${a[@]}" | median); bm=$(printf '%s\n' "${b[@]}" | median)
  ar=$(printf '%s\n' "${arss[@]}" | sort -n | tail -1); br=$(printf '%s\n' "${brss[@]}" | sort -n | tail -1)
  rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.1f", n / (ms / 1000) }'; }
  echo "| $count | $mb | sluice run, kind: s3 | ${am} ms | $(rate "$count" "$am") | $(rate "$mb" "$am") | $((ar / 1024)) MiB |"
  echo "| $count | $mb | curl -P $conc, then sluice run (directory) | ${bm} ms | $(rate "$count" "$bm") | $(rate "$mb" "$bm") | $((br / 1024)) MiB (sluice) |"
  exec {to_server}>&-
  wait "$server" 2>/dev/null || true
  server=""
  rm -rf "$gen"
done
