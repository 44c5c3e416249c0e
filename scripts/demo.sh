#!/usr/bin/env bash
# The main job on a generated sample: evshmd decodes one recording into shared memory, and
# a Rust reader and a Python reader attach to the same segment without copying it.
# Usage: scripts/demo.sh [EVENTS]   (default 10 million events)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-10000000}"
source scripts/venv.sh
echo "== building (release)"
cargo build --release --workspace --quiet
bin="$PWD/target/release"

work="$(mktemp -d)"
daemon=""
cleanup() {
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then kill -TERM "$daemon"; wait "$daemon" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/root"
echo "== generating a synthetic EVT3 recording of $events events"
"$bin/evshm" generate "$work/root/sample.raw" --events "$events"
ls -l "$work/root/sample.raw"

socket="$work/evshm.sock"
"$bin/evshmd" --root "$work/root" --socket "$socket" &
daemon=$!
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done

echo; echo "== Rust reader (first open: evshmd decodes the file into a segment)"
"$bin/evshm" --socket "$socket" open sample.raw
echo; echo "== Python reader (same segment, no decode, no copy)"
PYTHONPATH="$PWD/python_client/src" "$PY" -m evshm --socket "$socket" open sample.raw
echo; echo "== Rust reader again"
"$bin/evshm" --socket "$socket" open sample.raw
echo; echo "== evshmd counters"
"$bin/evshm" --socket "$socket" stats

echo; echo "== stopping evshmd"
instance="$(cat "$socket.lock")"  # read while it runs: a clean stop removes the file
kill -TERM "$daemon"; wait "$daemon"
left=$(ls /dev/shm | grep -c "^evshm-v2-$instance-" || true)
echo "segments left in /dev/shm: $left"
daemon=""
