#!/usr/bin/env bash
# Installs a pinned package from PyPI into a virtual environment in the
# cache, once; prints the path of one of that environment's commands.
#   scripts/pip-tool.sh PACKAGE VERSION COMMAND
set -euo pipefail
package=${1:?package} version=${2:?version} command=${3:?command}
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
venv="$cache_root/$package-$version"
if [ ! -e "$venv/.complete" ]; then
    echo "$package: installing $version into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$cache_root"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version" >&2
    touch "$venv/.complete"
fi
echo "$venv/bin/$command"
