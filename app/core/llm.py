"""The LLM factory: any OpenAI-compatible provider as a llama_index function-calling LLM.

Built once per app (`app.state.llm`) and shared by every request: the underlying OpenAI
client keeps its HTTP connection pool. `None` when no model is configured; the AI
endpoints then answer 503 naming the settings to set, and the rest of the API works.
"""

from __future__ import annotations

from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.llms.openai_like import OpenAILike

from app.core.config import Settings
from app.core.errors import DomainError

# Local servers such as Ollama need no key, but the OpenAI client insists on one.
_NO_KEY = "not-needed"


class LLMNotConfiguredError(DomainError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__(
            "The AI advisor is not configured: set LLM_MODEL_NAME and LLM_BASE_URL "
            "(or LLM_PROVIDER), and LLM_API_KEY if the provider needs one."
        )


def build_llm(settings: Settings) -> FunctionCallingLLM | None:
    if not settings.llm_configured:
        return None
    api_key = settings.LLM_API_KEY.get_secret_value() if settings.LLM_API_KEY else _NO_KEY
    return OpenAILike(
        model=settings.LLM_MODEL_NAME,
        api_base=settings.llm_base_url,
        api_key=api_key,
        temperature=settings.LLM_TEMPERATURE,
        timeout=settings.LLM_TIMEOUT_SECONDS,
        max_retries=settings.LLM_MAX_RETRIES,
        context_window=settings.LLM_CONTEXT_WINDOW,
        is_chat_model=True,
        is_function_calling_model=True,
        reuse_client=True,
    )
