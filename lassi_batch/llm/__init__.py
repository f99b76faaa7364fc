"""LLM access for the pipeline: endpoint client, replay, prompt templates, reply parsing."""

from .client import ChatBackend, LLMError, OpenAIBackend, is_reasoning_model, is_truncated, make_backend
from .extract import Extraction, extract_code, normalize_category, parse_optimizations, parse_verdict
from .prompts import KINDS, PromptError, PromptSet, format_sources
from .replay import ReplayBackend, ReplayError

__all__ = [
    "ChatBackend", "LLMError", "OpenAIBackend", "is_reasoning_model", "is_truncated", "make_backend",
    "Extraction", "extract_code", "normalize_category", "parse_optimizations", "parse_verdict",
    "KINDS", "PromptError", "PromptSet", "format_sources",
    "ReplayBackend", "ReplayError",
]
