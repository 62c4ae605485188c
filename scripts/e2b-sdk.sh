#!/usr/bin/env bash
# Installs E2B's Python SDK (pinned) from PyPI into the cache, once; prints
# the path of that environment's python. Used by the tests that run agent
# code written for E2B against Paddock (issue 16).
exec "$(dirname "$0")/pip-tool.sh" e2b 2.63.0 python
