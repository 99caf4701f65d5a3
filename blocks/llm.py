"""The LLM endpoint block for ingestion extraction: any OpenAI-compatible API.

OpenAI itself, vLLM, Ollama (``http://host:11434/v1``), llama.cpp server,
LiteLLM... anything serving ``/v1/chat/completions``. The key is a
``SecretStr``: never in a repr, log line or artifact. Resolved like every
other block through :func:`blocks.resolve.resolve_block`; without a Prefect
API it is built from ``CLINICFLOW_INGEST_LLM_{BASE_URL,MODEL,API_KEY,BATCH_SIZE}``.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.resolve import ENV_BUILDERS, env_prefix, resolve_block
from clinicflow.core import secret_env

INGEST_LLM_BLOCK = "ingest-llm"


class OpenAICompatibleLLM(Block):
    """An OpenAI-compatible chat-completions endpoint."""

    _block_type_name = "clinicflow OpenAI-compatible LLM"
    _block_type_slug = "clinicflow-openai-compatible-llm"
    _description = "Base URL, model and key of an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp)."

    base_url: str = Field(default="https://api.openai.com/v1", description="API base URL, ending in /v1.")
    model: str = Field(default="gpt-4o-mini", description="Model name as the endpoint knows it.")
    api_key: SecretStr = Field(default=SecretStr(""), description="API key (local servers usually need none).")
    batch_size: int = Field(default=8, ge=1, description="Documents per request (failures fall back to one each).")
    timeout_seconds: float = Field(default=120, gt=0, description="Time limit of one request.")
    retries: int = Field(default=3, ge=0, description="Retries of transient errors (429, 5xx, connection).")

    def client(self) -> Any:
        """An ``openai.OpenAI`` client; its own retries are off, clinicflow's retry policy does them."""
        import openai

        return openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key.get_secret_value() or "not-needed",
            max_retries=0,
            timeout=self.timeout_seconds,
        )


def _from_env(name: str) -> OpenAICompatibleLLM:
    prefix = env_prefix(name)
    values: dict[str, Any] = {}
    for field, suffix in (
        ("base_url", "BASE_URL"),
        ("model", "MODEL"),
        ("api_key", "API_KEY"),
        ("batch_size", "BATCH_SIZE"),
        ("timeout_seconds", "TIMEOUT_SECONDS"),
        ("retries", "RETRIES"),
    ):
        raw = secret_env.getenv(prefix + suffix)
        if raw not in (None, ""):
            values[field] = raw
    return OpenAICompatibleLLM(**values)


ENV_BUILDERS.setdefault(OpenAICompatibleLLM, _from_env)


def resolve_llm(name: str = INGEST_LLM_BLOCK) -> OpenAICompatibleLLM:
    return resolve_block(name, OpenAICompatibleLLM)
