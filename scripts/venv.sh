# Sourced by the other scripts (from the repository root): makes the test virtualenv on
# first use (the packages of scripts/requirements-test.txt, torch included), (re)installs
# the evshm Python client from ./python_client into it, and exports PY, its python.
#
# The virtualenv lives outside the checkout, in $EVSHM_VENV or else in
# ${XDG_CACHE_HOME:-~/.cache}/evshm/venv-HASH, HASH being a hash of the requirements file
# and of python3's version: a fresh clone on the same machine (CI's) reuses it, and an edit
# of the requirements makes a new one. It is complete once its file .complete exists,
# written last: a creation that was interrupted is removed and started again. A lock
# serialises creations and installs by several scripts at once.
_evshm_requirements=scripts/requirements-test.txt
_evshm_key="$({ python3 -c 'import sys; print(sys.version)'; cat "$_evshm_requirements"; } \
    | sha256sum | cut -c1-12)"
venv="${EVSHM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/evshm/venv-$_evshm_key}"
mkdir -p "$(dirname "$venv")"
(
    set -euo pipefail
    flock 9
    if [ -n "${EVSHM_VENV:-}" ] && [ -x "$venv/bin/python" ] && [ ! -e "$venv/.complete" ] \
        && [ ! -e "$venv/.creating" ]; then
        : # a virtualenv made by hand and named by $EVSHM_VENV: used as it is
    elif [ ! -e "$venv/.complete" ]; then
        if [ -e "$venv" ] && [ ! -e "$venv/.creating" ] && [ -n "$(ls -A "$venv")" ]; then
            echo "scripts/venv.sh: $venv is not a virtualenv that it was making:" \
                "remove it, or name another one with EVSHM_VENV" >&2
            exit 1
        fi
        echo "== creating $venv from $_evshm_requirements (torch: minutes)" >&2
        started=$SECONDS
        rm -rf "$venv"
        mkdir "$venv"
        touch "$venv/.creating"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet -r "$_evshm_requirements"
        cp "$_evshm_requirements" "$venv/requirements-test.txt"
        rm "$venv/.creating"
        touch "$venv/.complete"
        echo "== created $venv in $((SECONDS - started)) s" >&2
    fi
    "$venv/bin/python" -m pip install --quiet --no-deps --force-reinstall ./python_client
) 9>"$venv.lock" || { echo "scripts/venv.sh: could not set up $venv" >&2; return 1; }
PY="$(cd "$venv/bin" && pwd)/python"
export PY
unset _evshm_requirements _evshm_key
