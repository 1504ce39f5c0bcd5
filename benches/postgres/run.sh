#!/usr/bin/env bash
# Load into Postgres: Sluice (pipelines/kline-postgres.yaml: CSV parse, rows with empty fields set
# aside, a per-symbol ma20, binary COPY per file in one transaction with its state) against the
# floor, `psql -c "\copy ... FROM ... CSV"` of the same files (no pipeline work). Both load an
# empty table on the same private server, in alternating order; prints rows per second.
#
#   bash benches/postgres/run.sh [--symbols 20] [--days 30] [--rows-per-day 20000] [--runs 3]
#
# Needs Postgres (scripts/install-services.sh). Data and server live under $BENCH_DIR
# (default ~/.cache/sluice/bench/postgres) and are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
symbols=20 days=30 rows=20000 runs=3 workers=2
while [ $# -gt 0 ]; do
  case "$1" in
    --symbols) symbols=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --rows-per-day) rows=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
SLUICE_BIN="$(bash benches/release-bin.sh)"
work="${BENCH_DIR:-$HOME/.cache/sluice/bench/postgres}"
rm -rf "$work"; mkdir -p "$work"
"$SLUICE_BIN" demo -q --dir "$work/demo" --symbols "$symbols" --days "$days" --rows-per-day "$rows" >/dev/null
data="$work/demo/data"
mapfile -t files < <(find "$data" -name '*.csv' | sort)
total=$((symbols * days * rows))
bytes=$(cat "${files[@]}" | wc -c)
echo "data: ${#files[@]} files, $total rows, $((bytes / 1000000)) MB"

# A private server, as the tests start it.
source benches/postgres/server.sh
cols="open_time bigint, open double precision, high double precision, low double precision, close double precision,
  volume double precision, close_time bigint, quote_volume double precision, trades bigint,
  taker_buy_base double precision, taker_buy_quote double precision, ignore text"

now() { date +%s.%N; }
results=()
for run in $(seq 1 "$runs"); do
  for who in $( [ $((run % 2)) = 1 ] && echo "psql sluice" || echo "sluice psql"); do
    psql_ -c "SET client_min_messages = warning; DROP TABLE IF EXISTS public.kline_ma; DROP TABLE IF EXISTS public.kline_raw; DROP SCHEMA IF EXISTS sluice CASCADE; CHECKPOINT"
    if [ "$who" = psql ]; then
      psql_ -c "CREATE TABLE public.kline_raw ($cols)"
      t0=$(now)
      cat "${files[@]}" | psql_ -c "\\copy public.kline_raw FROM STDIN CSV"
      t1=$(now)
      n=$(psql_ -c "SELECT count(*) FROM public.kline_raw")
    else
      t0=$(now)
      DATA_DIR="$data" PG_URL="postgresql://postgres@127.0.0.1:$port/postgres" PGPASSWORD="" \
        "$SLUICE_BIN" run -q --workers "$workers" pipelines/kline-postgres.yaml
      t1=$(now)
      n=$(psql_ -c "SELECT count(*) FROM public.kline_ma")
    fi
    secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
    rps=$(python3 -c "print(int($n / ($t1 - $t0)))")
    echo "run $run $who: $n rows in ${secs}s = $rps rows/s"
    results+=("$who $rps")
  done
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
r = {}
for line in sys.stdin:
    who, rps = line.split(); r.setdefault(who, []).append(int(rps))
p, s = statistics.median(r["psql"]), statistics.median(r["sluice"])
print(f"median rows/s: psql copy {p:,.0f}, sluice {s:,.0f}: sluice is {s/p:.2f}x of the floor")'
