#!/usr/bin/env bash
# Installs schemathesis (pinned) from PyPI into a virtual environment in the
# cache, once; prints the path of its `st` command. Used by the test that
# checks docs/openapi.yaml against the server.
set -euo pipefail
version=4.32.5
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
venv="$cache_root/schemathesis-$version"
if [ ! -e "$venv/.complete" ]; then
    echo "schemathesis: installing $version into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$cache_root"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
    touch "$venv/.complete"
fi
echo "$venv/bin/st"
