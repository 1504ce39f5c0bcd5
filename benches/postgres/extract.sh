#!/usr/bin/env bash
# Extract from Postgres: Sluice reading a table through binary COPY into Arrow and writing it to
# the Parquet lake (a full load split by the primary key into spans read in parallel, one
# snapshot), against the floor, `psql -c "COPY (SELECT * FROM t) TO STDOUT (FORMAT binary)"` to
# /dev/null (no decoding, no writing). Both read the same table on one private server, in
# alternating order; prints rows per second, and Sluice's peak RSS at each table size, which
# should stay flat as the table grows.
#
#   bash benches/postgres/extract.sh [--rows 10000000] [--sizes "2500000 5000000"] [--runs 2]
#
# Needs Postgres (scripts/install-services.sh). The server and lake live under $BENCH_DIR
# (default ~/.cache/sluice/bench/pg-extract) and are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=10000000 sizes="2500000 5000000" runs=2 workers=2
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
SLUICE_BIN="$(bash benches/release-bin.sh)"
work="${BENCH_DIR:-$HOME/.cache/sluice/bench/pg-extract}"
rm -rf "$work"; mkdir -p "$work"

# A private server, as the tests start it.
source benches/postgres/server.sh

psql_ -c "CREATE TABLE events (id bigint PRIMARY KEY, user_id int NOT NULL, item_id int, event_type text,
  amount numeric(12,2), ts timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
loaded=0
grow() {  # grow the table to $1 rows
  psql_ -c "INSERT INTO events SELECT g, g % 100000, g % 5000, (ARRAY['view','click','like','purchase'])[1 + g % 4],
    (g % 100000) / 100.0, timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '1 second'
    FROM generate_series($((loaded + 1)), $1) g"
  psql_ -c "VACUUM ANALYZE events"
  loaded=$1
}
cat > "$work/extract.yaml" <<YAML
pipeline: pg_extract
env: [PG_URL]
sources:
  events:
    kind: postgres
    url: \${PG_URL}
    table: public.events
sink:
  lake: lake
  dataset: events
YAML
now() { date +%s.%N; }
results=()
for size in $sizes $rows; do
  grow "$size"
  for run in $(seq 1 "$runs"); do
    for who in $( [ $((run % 2)) = 1 ] && echo "psql sluice" || echo "sluice psql"); do
      if [ "$who" = psql ]; then
        t0=$(now)
        psql_ -c "COPY (SELECT * FROM events) TO STDOUT (FORMAT binary)" >/dev/null
        t1=$(now)
        rss=0
      else
        rm -rf "$work/lake"
        t0=$(now)
        (cd "$work" && PG_URL="postgresql://postgres@127.0.0.1:$port/postgres" \
          /usr/bin/time -f "%M" -o "$work/rss" "$SLUICE_BIN" run -q --workers "$workers" extract.yaml)
        t1=$(now)
        rss=$(( $(cat "$work/rss") / 1024 ))
        n=$("$SLUICE_BIN" query --lake "$work/lake" --format csv "SELECT count(*) FROM events" | tail -1)
        [ "$n" = "$size" ] || { echo "sluice wrote $n rows, not $size" >&2; exit 1; }
      fi
      rps=$(python3 -c "print(int($size / ($t1 - $t0)))")
      secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
      echo "rows $size run $run $who: ${secs}s = $rps rows/s$( [ "$who" = sluice ] && echo ", peak RSS ${rss} MiB")"
      results+=("$size $who $rps $rss")
    done
  done
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
r = {}
for line in sys.stdin:
    size, who, rps, rss = line.split()
    r.setdefault((int(size), who), []).append((int(rps), int(rss)))
for size in sorted({s for s, _ in r}):
    p = statistics.median(x for x, _ in r[(size, "psql")])
    s = statistics.median(x for x, _ in r[(size, "sluice")])
    m = max(y for _, y in r[(size, "sluice")])
    print(f"{size} rows: sluice {s:,.0f} rows/s, psql COPY binary {p:,.0f} rows/s ({s / p:.2f}x); sluice peak RSS {m} MiB")
'
