#!/usr/bin/env bash
# Builds the wheel that `pip install` takes: the evshm Python package with evshmd and the
# evshm command line as scripts (pip puts them on PATH beside python), and prints its path,
# the only line on stdout. Usage: scripts/wheel.sh [OUT_DIR]   (default: dist)
#
# The backend is setuptools-rust, kept by PyO3 beside maturin: maturin's `bindings = "bin"`
# builds the binaries of one crate, and the wheel needs those of two (daemon/ and client/),
# which setuptools-rust builds from [[tool.setuptools-rust.bins]] in
# python_client/pyproject.toml (cargo --locked, with the `wheel` profile of Cargo.toml).
# The wheel is then retagged py3-none (the binaries do not link Python: one wheel serves
# every Python 3), and auditwheel checks that the binaries link nothing but what every
# manylinux system has and tags the wheel with the manylinux policy their glibc symbols
# meet (`auditwheel repair`; it fails for a wheel that meets none). That policy is the
# oldest glibc whose symbols the build machine's linker chose: build on an older system (a
# manylinux container) for a wheel that installs on older ones.
#
# Caches, beside the test virtualenv: the build tools (scripts/requirements-wheel.txt) in a
# virtualenv of their own, and the wheel under a hash of everything it is built from (the
# crates' sources and manifests, Cargo.lock, the Python package, this script, the tools,
# rustc's version), so that a build with nothing changed compiles nothing. Cargo builds in
# target/ of the checkout, as every build of the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
source scripts/virtualenv.sh
tools="$(evshm_virtualenv wheel-tools scripts/requirements-wheel.txt)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/evshm/wheels"
mkdir -p "$cache" "$out"

inputs=(Cargo.toml Cargo.lock protocol/Cargo.toml protocol/src formats/Cargo.toml formats/src
        daemon/Cargo.toml daemon/src client/Cargo.toml client/src python_client/pyproject.toml
        python_client/README.md python_client/src scripts/wheel.sh scripts/requirements-wheel.txt)
key="$("$tools/bin/python" - "${inputs[@]}" <<'EOF'
import hashlib, subprocess, sys
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                         "--", *sys.argv[1:]], check=True, capture_output=True).stdout
digest = hashlib.sha256()
for name in sorted(set(filter(None, listed.split(b"\0")))):
    try:
        with open(name, "rb") as f:
            digest.update(name + b"\0" + hashlib.sha256(f.read()).digest())
    except FileNotFoundError:  # deleted, not yet staged
        pass
digest.update(subprocess.run(["rustc", "-vV"], check=True, capture_output=True).stdout)
digest.update(sys.version.encode())
print(digest.hexdigest()[:16])
EOF
)"

(
    flock 9
    if ! ls "$cache/$key"/evshm-*.whl >/dev/null 2>&1; then
        echo "== building the wheel (release binaries of evshmd and evshm: minutes the first time)"
        started=$SECONDS
        work="$(mktemp -d)"
        trap 'rm -rf "$work"' EXIT
        (cd python_client && "$tools/bin/python" -m pip wheel --quiet --no-deps \
            --no-build-isolation --wheel-dir "$work/built" .)
        "$tools/bin/python" -m wheel tags --remove --python-tag py3 --abi-tag none \
            "$work/built"/evshm-*.whl
        PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair --wheel-dir "$work/repaired" \
            "$work/built"/evshm-*.whl
        mkdir "$work/$key"
        mv "$work/repaired"/evshm-*.whl "$work/$key/"
        mv "$work/$key" "$cache/$key"
        # The newest few are enough to go back and forth between branches.
        ls -dt "$cache"/*/ | tail -n +6 | xargs -r rm -rf
        echo "== built $(basename "$cache/$key"/evshm-*.whl) in $((SECONDS - started)) s"
    fi
) 9>"$cache.lock" >&2

wheel="$(ls "$cache/$key"/evshm-*.whl)"
rm -f "$out"/evshm-*.whl
cp "$wheel" "$out/"
echo "$(cd "$out" && pwd)/$(basename "$wheel")"
