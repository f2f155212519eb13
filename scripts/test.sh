#!/usr/bin/env bash
# Run the checks and the test suite (as root: the tests create namespaces, veths and raw sockets).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
