#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and run Sluice.
#   scripts/setup.sh            DuckDB's shared library (enough for `sluice demo` and `sluice run`)
#   scripts/setup.sh --plugins  also a wasm toolchain route to rebuild the plugins from source
#   scripts/setup.sh --fuzz     also cargo-fuzz, for scripts/fuzz.sh (from crates.io)
#   scripts/setup.sh --services also Postgres and Redis, which the connector tests start
#   scripts/setup.sh --python   also Java 17 for the Python package's Spark tests (the package's
#                               venv itself is made by scripts/python-package.sh, from PyPI)
# The options combine (CI passes all four). Idempotent: each step checks before it installs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
plugins=false
fuzz=false
services=false
python=false
for arg in "$@"; do
  case "$arg" in
    --plugins) plugins=true ;;
    --fuzz) fuzz=true ;;
    --services) services=true ;;
    --python) python=true ;;
    *) echo "setup: unknown option $arg (expected --plugins, --fuzz, --services, --python)" >&2; exit 2 ;;
  esac
done

bash "$here/install-duckdb.sh"

if $plugins; then
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

if $fuzz; then
  if cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: $(cargo fuzz --version) present"
  else
    # It runs on the stable toolchain (scripts/fuzz.sh sets RUSTC_BOOTSTRAP=1 for its flags).
    # Built in cargo's own scratch dir, not the project's target dir.
    echo "setup: installing cargo-fuzz from crates.io"
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked --quiet
    cargo fuzz --version >/dev/null
  fi
fi

if $services; then
  bash "$here/install-services.sh"
fi

if $python; then
  # pyspark 3.5 runs on Java 8, 11 or 17.
  if java -version 2>&1 | grep -qE 'version "(17|11|1\.8)'; then
    echo "setup: $(java -version 2>&1 | head -1) present"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Java 17 for the Spark tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "setup: the Spark tests need Java 17: install openjdk-17-jre-headless" >&2
    exit 1
  fi
  # The package's venvs need `python3 -m venv` with ensurepip (Debian splits it into python3-venv).
  if python3 -c "import ensurepip, venv" 2>/dev/null; then
    echo "setup: python3 $(python3 -c 'import sys; print(sys.version.split()[0])') with venv present"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "setup: python3 -m venv needs ensurepip: install python3-venv" >&2
    exit 1
  fi
fi
