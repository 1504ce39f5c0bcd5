#!/usr/bin/env bash
# CI job: a plugin author outside this repository (issue 22).
#   1. `cargo package` the SDK crates (sluice-contract, then sluice-plugin, each verified by
#      cargo), and unpack the .crate files into a temporary directory.
#   2. In an empty temporary directory, `sluice plugin new` a Rust plugin whose SDK comes only from
#      those unpacked crates (by version, patched to them), `cargo test` it natively, `sluice plugin
#      build` it, and `sluice plugin test` + `inspect` it. `cargo metadata` must name no crate
#      inside this repository.
#   3. The same for a Python plugin, built from source by componentize-py (from PyPI).
# Needs the sluice binary ($SLUICE_BIN, default $CARGO_TARGET_DIR/debug/sluice) and
# $SLUICE_COMPONENTIZE_PY (scripts/componentize-venv.sh prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
: "${CARGO_TARGET_DIR:=$HOME/.cache/sluice/target}"
export CARGO_TARGET_DIR
sluice="${SLUICE_BIN:-$CARGO_TARGET_DIR/debug/sluice}"
work="$(mktemp -d /tmp/sluice-author.XXXXXX)"
trap 'rm -rf "$work"' EXIT
say() { printf '[plugin-author] %s\n' "$*"; }

say "cargo package sluice-contract and sluice-plugin"
pkg="$CARGO_TARGET_DIR/sdk-package"
rm -rf "$pkg/package"
cargo package -q -p sluice-contract --allow-dirty --target-dir "$pkg"
# sluice-contract is not on crates.io: the packaged sluice-plugin resolves it from the one above.
(cd plugins && cargo package -q -p sluice-plugin --allow-dirty --target-dir "$pkg" \
  --config "patch.crates-io.sluice-contract.path=\"$root/sluice-contract\"")
mkdir -p "$work/sdk"
for c in "$pkg"/package/sluice-contract-*.crate "$pkg"/package/sluice-plugin-*.crate; do
  say "  $(basename "$c") ($(stat -c %s "$c") bytes)"
  tar xzf "$c" -C "$work/sdk"
done
sdk="$(ls -d "$work"/sdk/sluice-plugin-*/)"

say "a Rust plugin in an empty directory, against the packaged SDK only"
mkdir -p "$work/author" && cd "$work/author"
"$sluice" plugin new my-scale --sdk "$sdk"
cd my-scale
if cargo metadata --format-version 1 | grep -o "\"manifest_path\":\"[^\"]*" | grep -q "\"$root/"; then
  echo "plugin-author: the scaffolded plugin reaches into $root:" >&2
  cargo metadata --format-version 1 | grep -o "\"manifest_path\":\"$root/[^\"]*" | sort -u >&2
  exit 1
fi
cargo test -q --target-dir "$CARGO_TARGET_DIR/author-native"
"$sluice" plugin build --target-dir "$CARGO_TARGET_DIR/wasm"
"$sluice" plugin test ./my-scale.wasm --config @tests/fixtures/config.yaml \
  --input tests/fixtures/input.csv --expect tests/fixtures/expected.csv
"$sluice" plugin inspect ./my-scale.wasm | tee "$work/inspect.txt"
grep -q "^sdk: *sluice-plugin $(basename "$sdk" | sed 's/sluice-plugin-//')" "$work/inspect.txt"

say "a Python plugin in an empty directory, built by componentize-py"
cd "$work/author"
"$sluice" plugin new my_scale_py --lang python
cd my_scale_py
SLUICE_COMPONENTIZE_PY="${SLUICE_COMPONENTIZE_PY:?run scripts/componentize-venv.sh}" "$sluice" plugin build
"$sluice" plugin test ./my_scale_py.wasm --config @tests/fixtures/config.yaml \
  --input tests/fixtures/input.csv --expect tests/fixtures/expected.csv
"$sluice" plugin inspect ./my_scale_py.wasm | grep "^sdk: *sluice-plugin-py "
say "ok"
