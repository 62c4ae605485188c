#!/usr/bin/env bash
# Installs schemathesis (pinned) from PyPI into the cache, once; prints the
# path of its `st` command. Used by the test that checks docs/openapi.yaml
# against the server.
exec "$(dirname "$0")/pip-tool.sh" schemathesis 4.32.5 st
