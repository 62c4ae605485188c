#!/usr/bin/env bash
# Installs the `mcp` Python package (pinned) from PyPI into the cache, once;
# prints that environment's python. The test of `paddock mcp` drives it with
# this client, as agent frameworks do (issue 16).
exec "$(dirname "$0")/pip-tool.sh" mcp 2.3.0 python
