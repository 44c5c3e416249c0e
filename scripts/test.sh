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

echo "== ruff / mypy"
# Both configured in python_client/pyproject.toml: ruff on the client and every Python test
# file; mypy strict on the evshm package, then on each test suite (separately: both have a
# conftest), where test functions need not be annotated and evshm is not re-reported. The
# mypy caches live beside the virtualenv (outside the checkout, kept between CI runs).
export RUFF_CACHE_DIR="$PWD/target/ruff-cache"
"$PY" -m ruff check --config python_client/pyproject.toml \
    python_client tests/python tests/support/py_reader.py
mypy_tests=(--allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls
            --allow-any-generics --no-warn-return-any --follow-imports=silent)
(cd python_client && MYPY_CACHE_DIR="$venv.mypy/package" "$PY" -m mypy)
(cd python_client && MYPYPATH=src:tests MYPY_CACHE_DIR="$venv.mypy/client-tests" \
    "$PY" -m mypy "${mypy_tests[@]}" tests)
(cd tests/python && MYPYPATH=../../python_client/src:. MYPY_CACHE_DIR="$venv.mypy/tests-python" \
    "$PY" -m mypy --config-file ../../python_client/pyproject.toml "${mypy_tests[@]}" \
    . ../support/py_reader.py)

echo "== pytest"
# -rs lists every skipped test with its reason. Outside CI a test whose optional dependency
# is missing skips; in CI ($CI set, not false or 0), where scripts/venv.sh installs them all,
# a missing or broken one fails the run here instead of passing with its tests skipped.
case "${CI:-}" in
    "" | 0 | [Ff][Aa][Ll][Ss][Ee]) ;;
    *) "$PY" -c "import numpy, polars, torch" || {
        echo "CI is set, and numpy, polars or torch cannot be imported: their tests would" \
            "be skipped (scripts/venv.sh installs scripts/requirements-test.txt)" >&2
        exit 1
    }
    # tonic, the reference of the transform tests, installs on Python >= 3.10 only.
    "$PY" -c "import sys; sys.version_info < (3, 10) or __import__('tonic')" || {
        echo "CI is set, and tonic cannot be imported: the tests that compare" \
            "evshm.transforms with it would be skipped" >&2
        exit 1
    } ;;
esac
EVSHMD="$PWD/target/debug/evshmd" "$PY" -m pytest -q -rs python_client/tests tests/python
