#!/usr/bin/env bash
# One load-generator run as docs/operations.md reports it: the machine's facts,
# then a fresh server and csms/examples/loadgen.rs against it on loopback.
#
#   csms/examples/loadgen.sh [--bin-dir DIR] [--stations N] [--messages M] [--database-url URL]
#
# --bin-dir holds `csms` and `loadgen` (default: target/release and
# target/release/examples, built first). Pass another build's binaries to
# compare two commits on the same machine in the same hour.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin_dir=""
stations=2000
messages=20
database_url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --stations) stations="$2"; shift 2 ;;
    --messages) messages="$2"; shift 2 ;;
    --database-url) database_url="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$bin_dir" ]; then
  cargo build --release --locked -q -p csms --bin csms --example loadgen
  csms=target/release/csms
  loadgen=target/release/examples/loadgen
else
  csms="$bin_dir/csms"
  loadgen="$bin_dir/loadgen"
fi

work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

echo "== machine"
echo "cores $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "memory $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# One fsync'd 4 KiB write is what a commit costs (SQLite synchronous=FULL).
dd if=/dev/zero of="$work/fsync" bs=4k count=500 oflag=dsync 2>&1 | tail -1 \
  | awk '{printf "fsync: 500 synchronous 4 KiB writes in %s s = %.0f us each\n", $(NF-3), $(NF-3) * 2000}'
echo "binaries $csms ($(stat -c %y "$csms" | cut -d. -f1))"

db_args=()
if [ -n "$database_url" ]; then db_args=(--database-url "$database_url"); fi
"$csms" serve --data-dir "$work/data" "${db_args[@]}" --ocpp-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 \
  >"$work/server.out" 2>"$work/server.log" &
server=$!
for _ in $(seq 1 100); do
  grep -q '^listening ' "$work/server.out" 2>/dev/null && break
  sleep 0.2
done
ocpp=$(sed -n 's/^listening ocpp=\([^ ]*\).*/\1/p' "$work/server.out")
[ -n "$ocpp" ] || { echo "server did not start:"; cat "$work/server.log"; exit 1; }

echo "== loadgen: $stations stations, $messages messages each (mutual TLS, full handshake per station)"
RUST_LOG=warn "$loadgen" --data-dir "$work/data" "${db_args[@]}" --url "wss://localhost:${ocpp##*:}" \
  --stations "$stations" --messages "$messages" --server-pid "$server"
