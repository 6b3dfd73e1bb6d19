#!/usr/bin/env bash
# Quick start, part 2: install (pinned, into .venv) and run the whole test suite.
# SQLite by default; TEST_DATABASE_URL=postgresql+asyncpg://user@host/db runs it on PostgreSQL
# (each run creates and drops its own databases on that server).
# Extra arguments go to pytest (e.g. -k health, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/python -m pytest "$@"
