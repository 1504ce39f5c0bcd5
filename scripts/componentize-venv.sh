#!/usr/bin/env bash
# The Python-plugin toolchain: componentize-py (from PyPI) under ~/.cache/sluice/venv/cpy, the
# version the Python SDK's glue is written against (sluice_toolchain::python::COMPONENTIZE_PY).
# Idempotent. Prints the value for SLUICE_COMPONENTIZE_PY (its executable) and nothing else on
# stdout.
set -euo pipefail
version=0.25.1
dir="${SLUICE_VENV_DIR:-$HOME/.cache/sluice/venv}/cpy"
if [ "$("$dir/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $version" ]; then
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q "componentize-py==$version" >&2
fi
echo "$dir/bin/componentize-py"
