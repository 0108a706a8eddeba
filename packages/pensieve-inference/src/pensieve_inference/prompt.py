"""Render a Messages request into the model's chat template, then into token ids."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import TemplateError
from mlx_lm.tokenizer_utils import TokenizerWrapper

from pensieve_claude_types import (
    DocumentBlockParam,
    ImageBlockParam,
    MessageParam,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ToolReferenceBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from pensieve_core import GenerationRequest
from pensieve_core.errors import InvalidRequestError

# Claude Code's first system block changes per conversation and means nothing to a local model.
BILLING_PREFIX = "x-anthropic-billing-header:"


def _tool_result_text(block: ToolResultBlockParam) -> str:
    if isinstance(block.content, str):
        body = block.content
    else:
        parts = []
        for item in block.content:
            if isinstance(item, TextBlockParam):
                parts.append(item.text)
            elif isinstance(item, ToolReferenceBlockParam):
                parts.append(f"[tool loaded: {item.tool_name}]")
            else:
                raise InvalidRequestError(
                    f"{type(item).__name__.removesuffix('BlockParam').lower()} content in a "
                    "tool_result is not supported by this text-only model"
                )
        body = "\n".join(parts)
    tag = "tool_error" if block.is_error else "tool_result"
    return f"<{tag}>\n{body}\n</{tag}>"


def _block_text(block: Any, model_name: str) -> str:
    if isinstance(block, TextBlockParam):
        return block.text
    if isinstance(block, ToolUseBlockParam):
        call = json.dumps({"name": block.name, "arguments": block.input}, ensure_ascii=False)
        return f"<tool_call>\n{call}\n</tool_call>"
    if isinstance(block, ToolResultBlockParam):
        return _tool_result_text(block)
    if isinstance(block, (ThinkingBlockParam, RedactedThinkingBlockParam)):
        # Earlier reasoning is not replayed into the prompt, as the Anthropic API does.
        return ""
    if isinstance(block, (ImageBlockParam, DocumentBlockParam)):
        kind = "image" if isinstance(block, ImageBlockParam) else "document"
        raise InvalidRequestError(f"model {model_name!r} is text-only and cannot read {kind} blocks")
    return ""


def content_text(content: str | list[Any], model_name: str) -> str:
    if isinstance(content, str):
        return content
    return "\n\n".join(t for t in (_block_text(b, model_name) for b in content) if t)


def system_text(system: str | list[TextBlockParam] | None) -> str:
    if system is None:
        return ""
    blocks = [system] if isinstance(system, str) else [b.text for b in system]
    return "\n\n".join(b for b in blocks if b and not b.lstrip().startswith(BILLING_PREFIX))


def chat_messages(request: GenerationRequest, model_name: str) -> tuple[list[dict[str, str]], str]:
    """Chat-template messages, plus the text of a final assistant turn to continue (prefill)."""
    system_parts = [system_text(request.system)] if request.system is not None else []
    turns: list[dict[str, str]] = []
    for message in request.messages:
        text = content_text(message.content, model_name)
        if message.role == "system":
            system_parts.append(text)
        elif turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": message.role, "content": text})
    prefill = ""
    if turns and turns[-1]["role"] == "assistant":
        prefill = turns.pop()["content"]
    system = "\n\n".join(p for p in system_parts if p)
    messages = ([{"role": "system", "content": system}] if system else []) + turns
    return messages, prefill


class PromptRenderer:
    def __init__(self, tokenizer: TokenizerWrapper, model_name: str) -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name

    def text(self, request: GenerationRequest) -> str:
        messages, prefill = chat_messages(request, self.model_name)
        if not self.tokenizer.has_chat_template:
            body = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
            return f"{body}\n\nassistant: {prefill}"
        try:
            rendered = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except TemplateError:
            # Some templates refuse a system role: fold it into the first user turn instead.
            if not messages or messages[0]["role"] != "system":
                raise
            system, rest = messages[0]["content"], messages[1:]
            if rest and rest[0]["role"] == "user":
                rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
            else:
                rest.insert(0, {"role": "user", "content": system})
            rendered = self.tokenizer.apply_chat_template(
                rest, tokenize=False, add_generation_prompt=True
            )
        return rendered + prefill

    def tokens(self, request: GenerationRequest) -> list[int]:
        return self.tokenizer.encode(self.text(request), add_special_tokens=False)
