#!/usr/bin/env bash
# The Python venv for the S3 source tests (sluice-testkit's MotoServer): moto's S3 backend and its
# threaded server (flask, flask-cors), under ~/.cache/sluice/venv/moto. Idempotent. Prints the value
# for SLUICE_MOTO_PYTHON (the venv's interpreter) and nothing else on stdout.
set -euo pipefail
dir="${SLUICE_VENV_DIR:-$HOME/.cache/sluice/venv}/moto"
if ! "$dir/bin/python" -c "import moto.server, flask_cors" 2>/dev/null; then
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q 'moto[s3]==5.2.6' flask flask-cors >&2
fi
echo "$dir/bin/python"
