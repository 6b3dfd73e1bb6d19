#!/usr/bin/env bash
# Type-check app/ with mypy (settings in pyproject.toml: pydantic plugin, warn_unused_ignores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/mypy "$@"
