#!/usr/bin/env bash
# Install (pinned, into .venv) and run the tests.
#   scripts/test.sh          the fast loop: everything but the tests marked `slow`
#                            (subprocess restarts, fuzzing, scaling, faults)
#   scripts/test.sh --all    the whole suite, as CI runs it (the README's quick start)
# SQLite by default; TEST_DATABASE_URL=postgresql+asyncpg://user@host/db runs it on PostgreSQL
# (each run creates and drops its own databases on that server).
# Other arguments go to pytest (e.g. -k health, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
if [ "${1:-}" = "--all" ]; then
    shift
    exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -m "not slow" "$@"
