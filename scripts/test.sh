#!/usr/bin/env bash
# Every check and test of evshm: formatting, lints, docs, the wheel, the Rust suites (unit,
# real recordings, cross-process against a real evshmd, with the Python reader) and the
# Python suites, the cross-process ones against the installed wheel. This is the command
# the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

echo "== cargo fmt / clippy / doc"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== wheel"
# Built once (scripts/wheel.sh caches it under a hash of its sources) and installed, package
# and binaries, in a virtualenv of this checkout, target/wheel-venv, which also sees the
# packages of the test virtualenv (a .pth file) but not its evshm: the test virtualenv is
# shared by every clone on the machine, so nothing of one checkout goes there. The Python
# reader of the Rust tests and the cross-process Python tests use it.
wheel="$(bash scripts/wheel.sh)"
wheel_venv="$PWD/target/wheel-venv"
[ -x "$wheel_venv/bin/python" ] || python3 -m venv --without-pip "$wheel_venv"
purelib='import sysconfig; print(sysconfig.get_path("purelib"))'
"$PY" -c "$purelib" > "$("$wheel_venv/bin/python" -c "$purelib")/test-venv.pth"
"$PY" -m pip --python "$wheel_venv/bin/python" install --quiet --no-deps --force-reinstall \
    "$wheel"

echo "== cargo test"
cargo build --workspace --quiet
EVSHM_PYTHON="$wheel_venv/bin/python" cargo test --workspace

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
"$PY" -m pytest -q -rs python_client/tests
# The cross-process tests as a user of the wheel runs them: evshm imported from the
# wheel's virtualenv, evshmd and evshm found on PATH (its bin/), no cargo or rustc on PATH
# (their directories left out); test_wheel.py and test_readme.py also install the wheel in
# fresh virtualenvs.
path=""
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
    [ -x "$dir/cargo" ] || [ -x "$dir/rustc" ] || path="$path:$dir"
done
env -u EVSHMD -u EVSHM_CLI PATH="$wheel_venv/bin$path" EVSHM_WHEEL="$wheel" \
    "$wheel_venv/bin/python" -m pytest -q -rs -p no:cacheprovider tests/python
