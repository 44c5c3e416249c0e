# Sourced by the other scripts: makes .venv (pyarrow, numpy, pytest) on first use,
# (re)installs the evshm Python client from ./python_client, and sets PY to its python.
venv="${EVSHM_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv (pyarrow, numpy, pytest)" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r scripts/requirements-test.txt
fi
"$venv/bin/python" -m pip install --quiet --no-deps --force-reinstall ./python_client
PY="$(cd "$venv/bin" && pwd)/python"
export PY
