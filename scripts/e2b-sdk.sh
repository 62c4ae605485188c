#!/usr/bin/env bash
# Installs E2B's Python SDK (pinned) from PyPI into a virtual environment in
# the cache, once; prints the path of that environment's python. Used by the
# tests that run agent code written for E2B against Paddock (issue 16).
set -euo pipefail
version=2.63.0
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
venv="$cache_root/e2b-$version"
if [ ! -e "$venv/.complete" ]; then
    echo "e2b: installing $version into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$cache_root"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "e2b==$version" >&2
    touch "$venv/.complete"
fi
echo "$venv/bin/python"
