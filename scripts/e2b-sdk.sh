#!/usr/bin/env bash
# Installs E2B's Python SDK, every version in scripts/e2b-sdk-versions, from
# PyPI into the cache, once each. Prints the newest's python, or with
# `matrix`, `VERSION=PYTHON` for each, space-separated. Used by the tests
# that run agent code written for E2B against Paddock (issue 16).
set -euo pipefail
here=$(dirname "$0")
versions=$(grep -v '^#' "$here/e2b-sdk-versions" | grep .)
if [ "${1:-}" = matrix ]; then
    out=()
    for v in $versions; do
        out+=("$v=$("$here/pip-tool.sh" e2b "$v" python)")
    done
    echo "${out[*]}"
else
    "$here/pip-tool.sh" e2b "$(echo "$versions" | head -1)" python
fi
