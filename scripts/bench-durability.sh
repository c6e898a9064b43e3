#!/usr/bin/env bash
# What fsync on every append costs: two brokers on one machine, one with the default flush
# policy (no fsync on the write path) and one with log.flush.interval.messages=1 (every
# append fsynced before it is acknowledged), driven alternately by the same load so both
# see the same machine. Usage: scripts/bench-durability.sh [ROUNDS] [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
messages=${2:-500000}
cargo build --release -q -p tributary -p tributary-bench
work=$(mktemp -d /tmp/tributary-durability.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() { # name port overrides...
  local name=$1 port=$2
  shift 2
  local args=()
  for o in "$@"; do args+=(--override "$o"); done
  target/release/tributary dev --data-dir "$work/$name" --port "$port" "${args[@]}" \
    >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$work/$name.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "broker $name did not start" >&2
  cat "$work/$name.err" >&2
  exit 1
}

start nofsync 19192
start fsync 19193 log.flush.interval.messages=1
nofsync_pid=${pids[0]}
fsync_pid=${pids[1]}

target/release/tributary-bench disk --dir "$work" --bytes 1GiB
echo "| run | partitions | acks | messages | s | msgs/s | MB/s | ÷ disk fsync | p50 ms | p99 ms | p999 ms | max ms | errors | broker user s | broker sys s | user s/GB | CPU s/GB | RSS start MiB | RSS peak MiB |"
echo "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for round in $(seq "$rounds"); do
  for acks in 1 all; do
    target/release/tributary-bench produce --bootstrap 127.0.0.1:19192 \
      --topic "r$round-acks$acks" --create-topic --message-bytes 1KiB \
      --messages "$messages" --acks "$acks" --broker-pid "$nofsync_pid" | grep "^| produce" |
      sed "s/^| produce/| no fsync (default), round $round: produce/"
    target/release/tributary-bench produce --bootstrap 127.0.0.1:19193 \
      --topic "r$round-acks$acks" --create-topic --message-bytes 1KiB \
      --messages "$messages" --acks "$acks" --broker-pid "$fsync_pid" | grep "^| produce" |
      sed "s/^| produce/| flush.messages=1, round $round: produce/"
  done
done
