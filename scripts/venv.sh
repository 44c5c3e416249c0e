# Sourced by the other scripts (from the repository root): makes the test virtualenv on
# first use (the packages of scripts/requirements-test.txt, torch included: minutes) with
# evshm_virtualenv (scripts/virtualenv.sh: outside the checkout, in
# ~/.cache/evshm/venv-HASH, reused by every clone on the machine; $EVSHM_VENV names
# another), and exports PY, its python, and venv, its directory. The evshm package is not
# installed here: scripts/test.sh installs the wheel it builds.
source scripts/virtualenv.sh
venv="$(evshm_virtualenv venv scripts/requirements-test.txt "${EVSHM_VENV:-}")" \
    || { echo "scripts/venv.sh: no test virtualenv" >&2; return 1; }
PY="$(cd "$venv/bin" && pwd)/python"
export PY
