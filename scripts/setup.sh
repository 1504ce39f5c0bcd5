#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and run Sluice.
#   scripts/setup.sh            DuckDB's shared library (enough for `sluice demo` and `sluice run`)
#   scripts/setup.sh --plugins  also a wasm toolchain route to rebuild the plugins from source
# Idempotent: each step checks before it installs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

bash "$here/install-duckdb.sh"

if [ "${1:-}" = "--plugins" ]; then
  if rustup target list --installed 2>/dev/null | grep -qE '^wasm32-(unknown-unknown|wasip2)$'; then
    echo "setup: rustup wasm target present"
  elif [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] && /usr/bin/rustc --print target-list | grep -q '^wasm32-unknown-unknown$'; then
    echo "setup: Debian rust-web toolchain present"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing the Debian rust-web toolchain (wasm guests are built with -Zbuild-std)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web rust-web-src libstd-rust-web-dev cargo-web >/dev/null
  else
    echo "setup: no wasm toolchain: run 'rustup target add wasm32-unknown-unknown'," >&2
    echo "       or install Debian's rustc-web rust-web-src libstd-rust-web-dev cargo-web" >&2
    exit 1
  fi
fi
