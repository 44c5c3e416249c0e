#!/usr/bin/env bash
# Runs every benchmark of evshm and writes docs/BENCHMARKS.md and its plots (docs/*.png).
# Usage: benches/run.sh [--quick] [--no-build]     (about 20 min in full, a few in --quick)
#
# Never part of CI or scripts/test.sh: it takes minutes, needs GBs of /dev/shm, and its
# figures only mean something on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EVSHM_BENCH_VENV:-target/bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/python" -m pip install --quiet pyarrow numpy matplotlib
# The peers are optional: each one that does not install is reported as skipped. tonic is
# the peer of the transforms bench, pinned as in scripts/requirements-test.txt.
for peer in expelliarmus evt3 ray "tonic==1.7.0"; do
    "$venv/bin/python" -m pip install --quiet "$peer" >/dev/null 2>&1 \
        || echo "skipped: $peer does not install here" >&2
done
exec "$venv/bin/python" benches/run.py "$@"
