#!/usr/bin/env bash
# Builds the web console into console/dist (committed: the API process
# embeds it, so building the Rust needs no Node.js), or with --check builds
# it into a scratch directory and fails if that differs from what is
# committed (the sources, the generated API types or the bundle).
#   console/build.sh [--check]
# Node.js and npm come from Debian; the pinned packages (package-lock.json)
# from the npm registry, installed into console/node_modules.
set -euo pipefail
cd "$(dirname "$0")"
check=false
[ "${1:-}" = "--check" ] && check=true
if ! command -v npm >/dev/null 2>&1; then
    echo "console: installing Node.js and npm (Debian)" >&2
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nodejs npm >&2
fi
# Installs exactly the lockfile's versions; again only when it changed.
stamp=node_modules/.paddock-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" > "$stamp"
fi
out=dist
if $check; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
npx --no-install openapi-typescript ../docs/openapi.yaml -o "$out/schema.d.ts" >/dev/null 2>&1 \
    || { echo "console: generating the API types from docs/openapi.yaml failed" >&2; exit 1; }
if $check; then
    cmp -s "$out/schema.d.ts" src/schema.d.ts \
        || { echo "console: src/schema.d.ts is not what docs/openapi.yaml gives; run console/build.sh" >&2; exit 1; }
else
    mv "$out/schema.d.ts" src/schema.d.ts
fi
npx --no-install tsc --noEmit -p .
npx --no-install esbuild src/main.ts --bundle --minify --format=esm --target=es2020 \
    --legal-comments=none --log-level=warning --outfile="$out/app.js"
cp static/index.html static/icon.svg "$out/"
# The terminal library's stylesheet goes with ours, in one file.
cat static/app.css node_modules/@xterm/xterm/css/xterm.css > "$out/app.css"
if $check; then
    for f in index.html app.js app.css icon.svg; do
        cmp -s "$out/$f" "dist/$f" \
            || { echo "console: dist/$f is not what its sources build to; run console/build.sh and commit dist/" >&2; exit 1; }
    done
    echo "console: dist/ matches its sources"
else
    gz=$(cat dist/index.html dist/app.js dist/app.css dist/icon.svg | gzip -9 | wc -c)
    echo "console: built dist/ ($(cat dist/* | wc -c) bytes, $gz gzipped)"
fi
