#!/usr/bin/env bash
# Peak RSS and wall time of `sluice run` on inputs built to exhaust memory (issue 13, item 2):
# a CSV file of one 200 MB line without a newline, and 1 GiB of `0` (one line) as a zip member
# and as a gzip file, each ~1 MB compressed. Prints a Markdown table row per case.
# Usage: scripts/bench-rss-hostile.sh   (SLUICE_BIN overrides the binary; default: a release
# build in $CARGO_TARGET_DIR, built if missing). Needs GNU time (/usr/bin/time), python3 and
# ~300 MB free under ${BENCH_DIR:-/tmp/sluice-bench-rss-hostile}.
# Cases with `limits:` keys a binary does not know are reported as config errors (exit 2).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
bin="${SLUICE_BIN:-$CARGO_TARGET_DIR/release/sluice}"
if [ ! -x "$bin" ]; then
    cargo build --release -p sluice-cli
fi
work="${BENCH_DIR:-/tmp/sluice-bench-rss-hostile}"
rm -rf "$work"
mkdir -p "$work/files"
trap 'rm -rf "$work"' EXIT
python3 - "$work/files" <<'PY'
import gzip, sys, zipfile, zlib
d = sys.argv[1]
mib = b"0" * (1 << 20)
with open(f"{d}/line.csv", "wb") as f:
    f.write(b"y" * 200_000_000)
with zipfile.ZipFile(f"{d}/bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    with z.open("zeros.csv", "w") as m:
        for _ in range(1024):
            m.write(mib)
with gzip.open(f"{d}/bomb.csv.gz", "wb", compresslevel=9) as g:
    for _ in range(1024):
        g.write(mib)
PY
case_run() { # name, file, limits
    local name="$1" file="$2" limits="$3"
    rm -rf "$work/in" "$work/lake"
    mkdir -p "$work/in"
    cp "$work/files/$file" "$work/in/"
    cat > "$work/p.yaml" <<YAML
pipeline: hostile
sources:
  s:
    path: in
    $limits
    format: {csv: {header: false, columns: {a: utf8}}}
steps: []
sink: {lake: lake, dataset: s}
YAML
    local code=0
    /usr/bin/time -f "%M %e" -o "$work/time.txt" "$bin" run "$work/p.yaml" > "$work/out.txt" 2>&1 || code=$?
    read -r rss secs < <(tail -n 1 "$work/time.txt")
    local outcome
    outcome=$(grep -o -m1 -E "decompression bomb[^)]*\)|longer than limits.max_record_bytes|none of its [0-9]+ row\(s\) parsed|max_unit_bytes|unknown key \`[a-z_]+\`|[Mm]emory[^\"]{0,40}" "$work/out.txt" | head -n 1 || true)
    [ "$code" = 0 ] && [ -z "$outcome" ] && outcome="committed as a row"
    echo "| $name | $(du -h "$work/in/$file" | cut -f1) | exit $code: ${outcome:-?} | ${secs} s | $((rss / 1024)) MiB |"
}
echo "| case | file size | outcome | wall time | peak RSS |"
echo "|---|---|---|---|---|"
case_run "CSV, one 200 MB line, no newline" line.csv ""
case_run "zip member, 1 GiB of \`0\` (default limits)" bomb.zip ""
case_run "zip member, 1 GiB of \`0\`, \`max_ratio: 100000\`" bomb.zip "limits: {max_ratio: 100000}"
case_run "gzip, 1 GiB of \`0\` (default limits)" bomb.csv.gz ""
case_run "gzip, 1 GiB of \`0\`, \`max_ratio: 100000\`" bomb.csv.gz "limits: {max_ratio: 100000}"
