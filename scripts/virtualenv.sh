# Sourced by the other scripts (from the repository root): defines evshm_virtualenv.
#
# evshm_virtualenv NAME REQUIREMENTS [PATH] makes the virtualenv of the requirements file
# REQUIREMENTS, unless it is complete already, and prints its path. It lives outside the
# checkout, at PATH if given, else at ${XDG_CACHE_HOME:-~/.cache}/evshm/NAME-HASH, HASH
# being a hash of the requirements file and of python3's version: a fresh clone on the
# same machine (CI's) reuses it, and an edit of the requirements makes a new one. It is
# complete once its file .complete exists, written last: a creation that was interrupted is
# removed and started again. A lock serialises creations by several scripts at once. A
# PATH holding a virtualenv made by hand (no .complete) is used as it is.
evshm_virtualenv() {
    local name=$1 requirements=$2 venv=${3:-}
    if [ -z "$venv" ]; then
        local key
        key="$({ python3 -c 'import sys; print(sys.version)'; cat "$requirements"; } \
            | sha256sum | cut -c1-12)"
        venv="${XDG_CACHE_HOME:-$HOME/.cache}/evshm/$name-$key"
    fi
    mkdir -p "$(dirname "$venv")"
    (
        set -euo pipefail
        flock 9
        if [ -n "${3:-}" ] && [ -x "$venv/bin/python" ] && [ ! -e "$venv/.complete" ] \
            && [ ! -e "$venv/.creating" ]; then
            : # a virtualenv made by hand and named by the caller: used as it is
        elif [ ! -e "$venv/.complete" ]; then
            if [ -e "$venv" ] && [ ! -e "$venv/.creating" ] && [ -n "$(ls -A "$venv")" ]; then
                echo "scripts/virtualenv.sh: $venv is not a virtualenv that it was making:" \
                    "remove it, or name another one" >&2
                exit 1
            fi
            echo "== creating $venv from $requirements" >&2
            started=$SECONDS
            rm -rf "$venv"
            mkdir "$venv"
            touch "$venv/.creating"
            python3 -m venv "$venv"
            "$venv/bin/python" -m pip install --quiet --upgrade pip
            "$venv/bin/python" -m pip install --quiet -r "$requirements"
            cp "$requirements" "$venv/$(basename "$requirements")"
            rm "$venv/.creating"
            touch "$venv/.complete"
            echo "== created $venv in $((SECONDS - started)) s" >&2
        fi
    ) 9>"$venv.lock" >&2 || { echo "scripts/virtualenv.sh: could not set up $venv" >&2; return 1; }
    echo "$venv"
}
