#!/usr/bin/env bash
# Installs the prebuilt DuckDB shared library that the `sluice-catalog` crate links against.
#
# Compiling DuckDB's C++ ("bundled" feature) costs ~40 CPU-minutes; instead we take the official
# prebuilt libduckdb.so shipped inside the npm package @duckdb/node-bindings-linux-x64 and install
# it where the linker and the dynamic loader find it without any environment variables:
#   root:     /usr/local/lib/libduckdb.so (+ ldconfig)
#   non-root: $HOME/.local/lib/libduckdb.so; then export DUCKDB_LIB_DIR and LD_LIBRARY_PATH to it.
# A fully self-contained release binary instead uses `--features bundled` (see docs/building.md).
set -euo pipefail
version="1.5.6"
npm_pkg="@duckdb/node-bindings-linux-x64@${version}-r.1"
if [ "$(id -u)" = 0 ]; then prefix="${SLUICE_DUCKDB_PREFIX:-/usr/local}"; else prefix="${SLUICE_DUCKDB_PREFIX:-$HOME/.local}"; fi
dest="$prefix/lib/libduckdb.so"
stamp="$prefix/lib/.libduckdb-version"
if [ -f "$dest" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  echo "install-duckdb: DuckDB $version already at $dest"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$npm_pkg" >/dev/null && tar xzf ./*.tgz)
mkdir -p "$prefix/lib"
install -m 0755 "$tmp/package/libduckdb.so" "$dest.tmp"
mv -f "$dest.tmp" "$dest"
echo "$version" > "$stamp"
if [ "$(id -u)" = 0 ]; then ldconfig; else
  echo "install-duckdb: export DUCKDB_LIB_DIR=$prefix/lib LD_LIBRARY_PATH=$prefix/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
fi
echo "install-duckdb: DuckDB $version installed at $dest"
