#!/usr/bin/env bash
# The crate boundaries ARCHITECTURE.md states, checked against `cargo tree`: which workspace
# crates (and heavy dependencies) each crate may depend on, directly or not. A boundary broken by
# a new dependency fails here, naming the crate and what it reached.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
# crate | what it must not reach (extended regex over crate names)
while IFS='|' read -r crate forbidden; do
    [ -z "$crate" ] && continue
    reached="$(cargo tree -p "$crate" -e normal --prefix none 2>/dev/null | sed 's/ .*//' | sort -u |
        grep -Ex "$forbidden" | grep -vx "$crate" || true)"
    if [ -n "$reached" ]; then
        echo "boundaries: $crate must not depend on: $(echo "$reached" | tr '\n' ' ')" >&2
        fail=1
    fi
done <<'RULES'
sluice-contract|sluice-.*|tokio|wasmtime|parquet|duckdb|serde
sluice-chain|sluice-(core|config|source|lake|wasm|catalog|watch|cli)|tokio|wasmtime|parquet|duckdb|saphyr-parser
sluice-core|sluice-(config|source|lake|wasm|catalog|watch|cli)|wasmtime|parquet|duckdb|saphyr-parser|notify
sluice-config|sluice-(source|lake|wasm|catalog|watch|cli)|wasmtime|parquet|duckdb|notify
sluice-source|sluice-(config|wasm|catalog|watch|cli)|wasmtime|duckdb|notify
sluice-lake|sluice-(config|source|wasm|catalog|watch|cli)|wasmtime|duckdb|notify
sluice-wasm|sluice-(config|source|lake|catalog|watch|cli)|parquet|duckdb|notify
sluice-catalog|sluice-(config|source|lake|wasm|watch|cli)|wasmtime|parquet|notify
sluice-watch|sluice-(config|source|lake|wasm|catalog|cli)|wasmtime|parquet|duckdb
RULES
[ "$fail" = 0 ] && echo "boundaries: every crate keeps to its allowed dependencies"
exit "$fail"
