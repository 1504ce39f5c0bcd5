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
sluice-contract|sluice-.*|tokio|wasmtime|parquet|duckdb|serde|redis
sluice-chain|sluice-(delta|core|config|source|lake|wasm|catalog|watch|cli|postgres|redis|testkit)|tokio|wasmtime|parquet|duckdb|saphyr-parser|tokio-postgres|redis|deltalake
sluice-core|sluice-(delta|config|source|lake|wasm|catalog|watch|cli|postgres|redis|testkit)|wasmtime|parquet|duckdb|saphyr-parser|notify|tokio-postgres|pgpq|redis|deltalake
sluice-config|sluice-(delta|source|lake|wasm|catalog|watch|cli|postgres|redis|testkit)|wasmtime|parquet|duckdb|notify|tokio-postgres|pgpq|redis|deltalake
sluice-source|sluice-(delta|config|wasm|catalog|watch|cli|postgres|redis|testkit)|wasmtime|duckdb|notify|tokio-postgres|pgpq|redis|deltalake
sluice-lake|sluice-(delta|config|source|wasm|catalog|watch|cli|postgres|redis|testkit)|wasmtime|duckdb|notify|tokio-postgres|pgpq|redis|deltalake
sluice-wasm|sluice-(delta|config|source|lake|catalog|watch|cli|postgres|redis|testkit)|parquet|duckdb|notify|tokio-postgres|pgpq|redis|deltalake
sluice-catalog|sluice-(delta|config|source|lake|wasm|watch|cli|postgres|redis|testkit)|wasmtime|parquet|notify|tokio-postgres|pgpq|redis|deltalake
sluice-watch|sluice-(delta|config|source|lake|wasm|catalog|cli|postgres|redis|testkit)|wasmtime|parquet|duckdb|tokio-postgres|pgpq|redis|deltalake
sluice-postgres|sluice-(delta|source|lake|wasm|catalog|watch|cli|redis|testkit)|wasmtime|parquet|duckdb|notify|redis|deltalake
sluice-testkit|sluice-.*|wasmtime|parquet|duckdb|tokio|arrow-.*|redis
sluice-redis|sluice-(delta|source|lake|wasm|catalog|watch|cli|postgres|testkit)|wasmtime|parquet|duckdb|notify|tokio-postgres|pgpq|deltalake
sluice-delta|sluice-(source|wasm|catalog|watch|cli|postgres|redis|s3|testkit)|wasmtime|duckdb|notify|tokio-postgres|pgpq|redis
sluice-s3|sluice-(delta|wasm|catalog|watch|cli|postgres|redis|testkit)|wasmtime|duckdb|notify|tokio-postgres|pgpq|redis|deltalake
sluice-kafka|sluice-(delta|wasm|catalog|watch|cli|postgres|redis|s3|testkit)|wasmtime|duckdb|notify|tokio-postgres|pgpq|redis|deltalake
sluice-toolchain|sluice-.*|wasmtime|parquet|duckdb|tokio|arrow-.*|redis|serde
RULES
# pyo3 only in the Python package's crate: no library crate depends on Python.
py="$(cargo tree --workspace -i pyo3 -e normal --prefix none 2>/dev/null | sed 's/ .*//' | grep -E '^sluice-' | sort -u |
    grep -vx sluice-py || true)"
if [ -n "$py" ]; then
    echo "boundaries: only sluice-py may depend on pyo3, not: $(echo "$py" | tr '\n' ' ')" >&2
    fail=1
fi
# One arrow: every arrow-based crate (pgpq, duckdb, parquet) on the same version.
dup="$(cargo tree -d -e normal --prefix none 2>/dev/null | grep -E '^arrow-[a-z]+ v' | sed 's/ (.*//' | sort -u |
    awk '{print $1}' | uniq -d || true)"
if [ -n "$dup" ]; then
    echo "boundaries: two versions of $(echo "$dup" | tr '\n' ' ')in the build (cargo tree -d)" >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "boundaries: every crate keeps to its allowed dependencies"
exit "$fail"
