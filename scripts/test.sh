#!/usr/bin/env bash
# Every check and test of evshm: formatting, lints, docs, the Rust suites (unit, real
# recordings, cross-process against a real evshmd, with the Python reader) and the Python
# suites. This is the command the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

echo "== cargo fmt / clippy / doc"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== cargo test"
cargo build --workspace --quiet
EVSHM_PYTHON="$PY" cargo test --workspace

echo "== pytest"
# -rs lists every skipped test with its reason. With CI set, the conftests fail the run
# when an optional dependency (numpy, polars, torch) is missing instead of skipping its tests.
EVSHMD="$PWD/target/debug/evshmd" "$PY" -m pytest -q -rs python_client/tests tests/python
