"""Render a Messages request into the model's chat template, then into token ids."""

from __future__ import annotations

from jinja2 import TemplateError
from mlx_lm.tokenizer_utils import TokenizerWrapper

from pensieve_claude_types import Tool, ToolChoiceNone
from pensieve_core import GenerationRequest
from pensieve_core.errors import InvalidRequestError

from .conversation import ChatMessage, build_conversation
from .tool_prompt import function_spec, tools_system_text


def template_knows_tools(tokenizer: TokenizerWrapper) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def offered_tools(request: GenerationRequest) -> list[Tool]:
    """Client tools the model may call: none under tool_choice none; built-in typed tools
    without a schema are server-side features a local model cannot run."""
    if not request.tools or isinstance(request.tool_choice, ToolChoiceNone):
        return []
    return [t for t in request.tools if t.input_schema is not None or t.type in (None, "custom")]


class PromptRenderer:
    def __init__(self, tokenizer: TokenizerWrapper, model_name: str) -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.native_tools = template_knows_tools(tokenizer)

    def _apply(self, messages: list[ChatMessage], tools: list[Tool]) -> str:
        kwargs = {"tools": [function_spec(t) for t in tools]} if tools and self.native_tools else {}
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **kwargs
        )

    def text(self, request: GenerationRequest) -> str:
        tools = offered_tools(request)
        system, turns, prefill = build_conversation(request, self.model_name, native_tools=self.native_tools)
        if tools and not self.native_tools:
            system = f"{system}\n\n{tools_system_text(tools)}" if system else tools_system_text(tools)
        messages = ([{"role": "system", "content": system}] if system else []) + turns
        if not turns:
            raise InvalidRequestError("messages: the conversation has no user or assistant content to answer")
        if not self.tokenizer.has_chat_template:
            body = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
            return f"{body}\n\nassistant: {prefill}"
        try:
            rendered = self._apply(messages, tools)
        except TemplateError as exc:
            if not system:
                raise InvalidRequestError(f"the chat template of {self.model_name!r} rejected the conversation: {exc}") from exc
            # Some templates refuse a system role: fold it into the first user turn instead.
            rest = [dict(m) for m in turns]
            if rest and rest[0]["role"] == "user":
                rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
            else:
                rest.insert(0, {"role": "user", "content": system})
            try:
                rendered = self._apply(rest, tools)
            except TemplateError as exc2:
                raise InvalidRequestError(
                    f"the chat template of {self.model_name!r} rejected the conversation: {exc2}"
                ) from exc2
        return rendered + prefill

    def tokens(self, request: GenerationRequest) -> list[int]:
        return self.tokenizer.encode(self.text(request), add_special_tokens=False)
