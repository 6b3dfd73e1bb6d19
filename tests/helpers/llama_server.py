"""llama.cpp's OpenAI-compatible server (llama-cpp-python) with a local GGUF model.

`scripts/test-real-llm.sh` installs it into a venv of its own (its pins are not ours) and
names that venv's Python and the model file in `TELATEN_REAL_LLM_PYTHON` and
`TELATEN_REAL_LLM_MODEL`; without them the `real_llm` tests are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers.server import ChildServer, free_port

MODEL_ALIAS = "gemma-3-270m"
# llama-cpp-python's chat format with tool calls (tools rendered into a ChatML prompt,
# calls constrained by a grammar); Gemma's own template knows no tools.
CHAT_FORMAT = "chatml-function-calling"


def configured() -> tuple[str, str] | None:
    python = os.environ.get("TELATEN_REAL_LLM_PYTHON")
    model = os.environ.get("TELATEN_REAL_LLM_MODEL")
    return (python, model) if python and model else None


class LlamaServer(ChildServer):
    ready_path = "/v1/models"
    name = "llama"

    def __init__(self, python: str, model: str, log_dir: Path, n_ctx: int = 8192) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        super().__init__(
            [
                python, "-m", "llama_cpp.server",
                "--model", model,
                "--model_alias", MODEL_ALIAS,
                "--chat_format", CHAT_FORMAT,
                "--n_ctx", str(n_ctx),
                "--seed", "7",
                # By default a new request interrupts the one in flight (its stream ends
                # early, empty): the chat and the roadmap worker would cut each other off.
                "--interrupt_requests", "False",
                "--host", "127.0.0.1",
                "--port", str(self.port),
            ],
            None,
            log_dir,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 300) -> None:
        super().wait_ready(timeout)  # loading the model comes first
