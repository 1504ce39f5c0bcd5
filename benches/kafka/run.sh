#!/usr/bin/env bash
# Kafka → lake, side by side with the floor: a plain consumer on the same client that reads the
# same records and discards them. Tansu 0.6.0 (in memory) on 127.0.0.1; the broker, the producer
# and sluice share the machine's cores.
#
#   bash benches/kafka/run.sh   # RECORDS=1000000 STREAM_SECONDS=120 STREAM_RATE=5000; SLUICE_BIN, KBENCH_BIN
#
# 1. Throughput: RECORDS behaviour events on 3 partitions, then `sluice run` (sessionize per
#    user into the lake) against `kbench consume` (the floor), each timed with its peak RSS.
# 2. Latency and memory over time: `sluice watch` follows the topic while the producer writes
#    STREAM_RATE records/s for STREAM_SECONDS; a probe asks the catalog every 200 ms how far each
#    partition is queryable. Latency per record: the first probe that sees it minus its produce
#    time (p50, p99; the probe's period bounds the error). RSS of the watch is sampled every second.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
work="$(mktemp -d /tmp/sluice-kbench.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
records="${RECORDS:-1000000}"
SLUICE_BIN="$(bash benches/release-bin.sh "$work/sluice")"
if [ -z "${KBENCH_BIN:-}" ]; then
  cargo build --release -q -p sluice-kafka --example kbench
  KBENCH_BIN="$CARGO_TARGET_DIR/release/examples/kbench"
fi
cp "$KBENCH_BIN" "$work/kbench"
tansu="$(bash scripts/kafka-venv.sh)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
broker="127.0.0.1:$port"
"$tansu" broker --listener-url "tcp://$broker" --advertised-listener-url "tcp://$broker" \
  --storage-engine memory://tansu/ >"$work/broker.log" 2>&1 &
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$tansu" topic create events --partitions 3 --broker "tcp://$broker" >/dev/null
export SLUICE_BIN KBENCH="$work/kbench" BROKER="$broker" WORK="$work" RECORDS="$records"
export TANSU="$tansu"
python3 "$root/benches/kafka/bench.py"
