#!/usr/bin/env bash
# Everything CI checks: set-up with test dependencies, lint, types, the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k hef -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev --no-launcher  # the tests leave the user's ~/.local/bin alone
echo "== ruff"
.venv/bin/ruff check nvr tests scripts
echo "== mypy"
.venv/bin/mypy nvr tests scripts
echo "== pytest"
.venv/bin/python -m pytest "$@"
