#!/usr/bin/env bash
# Installs Paddock's Python SDK (sdk/python, not editable) with its pinned
# dependencies into a virtual environment in the cache, once per version of
# the SDK's files (a SHA-256 over them and this script names it); prints
# that environment's python. Used by the tests that run the SDK against a
# booted appliance (sdk/python/tests/appliance_session.py), and to run its
# offline tests:
#   "$(scripts/python-sdk.sh)" -m unittest discover -s sdk/python/tests -p 'test_*.py'
set -euo pipefail
httpx_version=0.29.0
pyyaml_version=6.0.4
# What httpx pulls in, pinned too (constraints: installed only if needed).
constraints="anyio==4.16.0
certifi==2026.10.19.post1
exceptiongroup==1.3.2
h11==0.16.0
httpcore==1.0.9
idna==3.21
typing_extensions==4.16.0"

here=$(cd "$(dirname "$0")" && pwd)
sdk=$(cd "$here/../sdk/python" && pwd)
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "python-sdk: the SDK needs Python 3.10 or later ($python is $("$python" -V 2>&1))" >&2
    exit 1
fi

# What the SDK is: its files (not what building or running it leaves
# behind), this script, which pins its dependencies, and the Python.
hash=$(
    {
        "$python" -c 'import sys; print(sys.version)'
        cd "$sdk"
        find . -type f \
            -not -path '*/__pycache__/*' -not -path '*.egg-info/*' \
            -not -path './build/*' -not -path './dist/*' -not -path './.mypy_cache/*' -not -path './.ruff_cache/*' \
            -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        sha256sum < "$here/python-sdk.sh"
    } | sha256sum | cut -c1-16
)
venv="$cache_root/python-sdk-$hash"

if [ ! -e "$venv/.complete" ]; then
    mkdir -p "$cache_root"
    # One installer at a time; a second waits and then finds it complete.
    exec 9>"$venv.lock"
    flock 9
    if [ ! -e "$venv/.complete" ]; then
        echo "python-sdk: installing into $venv" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv" >&2
        stage=$(mktemp -d)
        trap 'rm -rf "$stage"' EXIT
        echo "$constraints" > "$stage/constraints.txt"
        pip=("$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -c "$stage/constraints.txt")
        "${pip[@]}" "httpx==$httpx_version" "pyyaml==$pyyaml_version" >&2
        # Built from a copy, so the build leaves nothing in the source tree.
        cp -R "$sdk" "$stage/python"
        rm -rf "$stage/python/build" "$stage/python/dist"
        find "$stage/python" -name '__pycache__' -prune -exec rm -rf {} + -o -name '*.egg-info' -prune -exec rm -rf {} +
        "${pip[@]}" "$stage/python" >&2
        touch "$venv/.complete"
    fi
    flock -u 9
fi
echo "$venv/bin/python"
