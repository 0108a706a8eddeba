"""output_config.effort as real control over a local model: whether adaptive thinking runs and
how long, and the value for a template's own `reasoning_effort` switch. docs/api.md has the table."""

from __future__ import annotations

from typing import Any

from pensieve_claude_types import Effort, ThinkingAdaptive, ThinkingEnabled
from pensieve_core import GenerationRequest

# What omitting effort means in the API.
DEFAULT_EFFORT: Effort = "high"
# medium caps adaptive thinking at this many tokens, and at a quarter of max_tokens so an answer fits.
MEDIUM_THINKING_TOKENS = 4096
# Templates with a reasoning_effort switch (gpt-oss) know low, medium and high.
TEMPLATE_EFFORT: dict[Effort, str] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def thinks(request: GenerationRequest) -> bool:
    """Whether the model is asked to think: `enabled` always, `adaptive` unless effort is low
    (the API's low effort skips thinking where it can; a local model cannot judge, so it skips)."""
    if isinstance(request.thinking, ThinkingEnabled):
        return True
    return isinstance(request.thinking, ThinkingAdaptive) and request.effort != "low"


def adaptive_budget(request: GenerationRequest) -> int | None:
    """The thinking budget effort sets for adaptive thinking (None: the model decides, as at high)."""
    if not isinstance(request.thinking, ThinkingAdaptive) or request.effort != "medium":
        return None
    return max(1, min(MEDIUM_THINKING_TOKENS, request.max_tokens // 4))


def template_reads_effort(tokenizer: Any) -> bool:
    """Whether the chat template reads `reasoning_effort` (gpt-oss style)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "reasoning_effort" in template


def template_effort(request: GenerationRequest) -> str | None:
    """The template's reasoning_effort; None leaves the template's own default when none was asked."""
    return TEMPLATE_EFFORT[request.effort] if request.effort is not None else None
