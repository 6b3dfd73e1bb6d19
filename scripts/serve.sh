#!/usr/bin/env bash
# Quick start, part 1: install (pinned, into .venv) and run the service.
# With no .env it runs on SQLite in ./.telaten on http://127.0.0.1:8000 (docs at /docs).
# Extra arguments go to `telaten serve` (e.g. --port 9000, --reload).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/telaten serve "$@"
