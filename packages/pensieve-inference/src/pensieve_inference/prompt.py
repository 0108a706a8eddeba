"""Render a Messages request into the model's chat template, then into token ids."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError
from mlx_lm.tokenizer_utils import TokenizerWrapper

from pensieve_claude_types import MessageParam, Tool, ToolChoiceNone, ToolReferenceBlockParam, ToolResultBlockParam
from pensieve_core import GenerationRequest, Phases
from pensieve_core.errors import InvalidRequestError

from .conversation import ChatMessage, read_conversation
from .dialects import GENERIC, Dialect, detect, generic
from .effort import template_effort, template_reads_effort, thinks
from .encoding import Encoded, PromptEncoder, common_chars
from .thinking import opens_thinking


def function_spec(tool: Tool) -> dict[str, Any]:
    """The OpenAI-style function entry tool-aware chat templates expect."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description or "",
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        },
    }


def offered_tools(request: GenerationRequest) -> list[Tool]:
    """Client tools the model may call: none under tool_choice none; built-in typed tools
    without a schema are server-side features a local model cannot run; a deferred tool
    (defer_loading) once a tool_reference in the conversation has loaded it."""
    if not request.tools or isinstance(request.tool_choice, ToolChoiceNone):
        return []
    loaded = referenced_tools(request.messages)
    return [
        t
        for t in request.tools
        if (t.input_schema is not None or t.type in (None, "custom")) and (not t.defer_loading or t.name in loaded)
    ]


def listed_tools(request: GenerationRequest) -> list[Tool]:
    """The offered tools rendered with the system prompt; deferred ones appear where they were
    loaded instead (conversation.loaded_tool_text), so loading one keeps the prefix cached."""
    return [t for t in offered_tools(request) if not t.defer_loading]


def referenced_tools(messages: list[MessageParam]) -> set[str]:
    return {
        item.tool_name
        for m in messages
        if not isinstance(m.content, str)
        for block in m.content
        if isinstance(block, ToolResultBlockParam) and not isinstance(block.content, str)
        for item in block.content
        if isinstance(item, ToolReferenceBlockParam)
    }


@dataclass(frozen=True)
class RenderedPrompt:
    """Token ids, and the offsets where message groups end (end of the system prompt and
    tools; end of the conversation before its last message): the places worth caching."""

    tokens: list[int]
    boundaries: tuple[int, ...] = ()
    # Where the system prompt and tools end (0: no system prompt): the prefix worth persisting.
    system_end: int = 0
    # The template opened the model's thinking section at the end of the prompt.
    thinking_open: bool = False
    # Where the message holding the last cache_control breakpoint ends (0: none): what is
    # prefilled up to there counts as cache creation, the rest as input.
    cache_end: int = 0
    # What rendering and encoding took (the other phases are zero here).
    phases: Phases = field(default_factory=Phases)
    # The prompt as the encoder keeps it: an answer's ids are remembered after it.
    encoded: Encoded | None = None


@dataclass(frozen=True)
class _Render:
    text: str
    # The chat messages, when the template took them as they are (so partial renders line up).
    messages: list[ChatMessage] | None
    tools: list[Tool]
    thinking: bool
    # The template's reasoning_effort, where it reads one and the request set an effort.
    effort: str | None
    # The chat messages up to the last cache_control breakpoint (None: there is none).
    marked: list[ChatMessage] | None


def _phases(started: float, encode_ms: float) -> Phases:
    """Render: the template and the partial renders that find message boundaries; tokenize:
    encoding the whole prompt (a tokenizer without offsets also encodes heads: counted as render)."""
    return Phases(render=(time.perf_counter() - started) * 1000 - encode_ms, tokenize=encode_ms)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PromptRenderer:
    def __init__(self, tokenizer: TokenizerWrapper, model_name: str) -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.dialect: Dialect = detect(tokenizer)
        # Templates with a tool dialect of their own render tools and calls themselves.
        self.native_tools = self.dialect is not GENERIC
        self.reads_effort = template_reads_effort(tokenizer)
        # One encoder for generating and counting: count_tokens then the same request encodes once.
        self.encoder = PromptEncoder(tokenizer)

    def _apply(
        self,
        messages: list[ChatMessage],
        tools: list[Tool],
        thinking: bool,
        effort: str | None = None,
        *,
        generation_prompt: bool = True,
    ) -> str:
        kwargs: dict[str, Any] = {"tools": [function_spec(t) for t in tools]} if tools and self.native_tools else {}
        if self.tokenizer.has_thinking:  # mlx-lm would otherwise turn thinking on for every request
            kwargs["enable_thinking"] = thinking
        if effort is not None:
            kwargs["reasoning_effort"] = effort
        text: str = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt, **kwargs
        )
        return text

    def text(self, request: GenerationRequest) -> str:
        return self._render(request).text

    def _chat(self, system: str, turns: list[ChatMessage], tools: list[Tool]) -> list[ChatMessage]:
        if tools and not self.native_tools:
            described = generic.system_text([function_spec(t) for t in tools])
            system = f"{system}\n\n{described}" if system else described
        return ([{"role": "system", "content": system}] if system else []) + turns

    def _render(self, request: GenerationRequest) -> _Render:
        tools = listed_tools(request)
        thinking = thinks(request)
        effort = template_effort(request) if self.reads_effort else None
        conv = read_conversation(request, self.model_name, native_tools=self.native_tools)
        turns, prefill = conv.turns, conv.prefill
        messages = self._chat(conv.system, turns, tools)
        marked = self._chat(*conv.marked, tools) if conv.marked is not None else None
        if not turns:
            raise InvalidRequestError("messages: the conversation has no user or assistant content to answer")
        if not self.tokenizer.has_chat_template:
            body = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
            return _Render(f"{body}\n\nassistant: {prefill}", None, tools, thinking, effort, marked)
        try:
            return _Render(
                self._apply(messages, tools, thinking, effort) + prefill, messages, tools, thinking, effort, marked
            )
        except TemplateError as exc:
            # The system text as rendered (with the generic tool descriptions).
            system = messages[0]["content"] if messages[0]["role"] == "system" else ""
            if not system:
                raise InvalidRequestError(
                    f"the chat template of {self.model_name!r} rejected the conversation: {exc}"
                ) from exc
            # Some templates refuse a system role: fold it into the first user turn instead.
            rest = [dict(m) for m in turns]
            if rest and rest[0]["role"] == "user":
                rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
            else:
                rest.insert(0, {"role": "user", "content": system})
            try:
                text = self._apply(rest, tools, thinking, effort) + prefill
                return _Render(text, None, tools, thinking, effort, marked)
            except TemplateError as exc2:
                raise InvalidRequestError(
                    f"the chat template of {self.model_name!r} rejected the conversation: {exc2}"
                ) from exc2

    def tokens(self, request: GenerationRequest) -> list[int]:
        return list(self.encoder.encode(self.text(request)).ids)

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def _prefix_end(self, head: list[ChatMessage], r: _Render, encoded: Encoded) -> int | None:
        """How far `head`, rendered alone, agrees with the full prompt (None: it did not render)."""
        try:
            text = self._apply(head, r.tools, r.thinking, r.effort, generation_prompt=False)
        except Exception:  # noqa: BLE001 — a template that needs more turns: no boundary there
            return None
        # The tokens wholly within the text the two agree on; a tokenizer without offsets
        # encodes the head to compare ids.
        within = encoded.tokens_within(common_chars(text, encoded.text))
        return _common_prefix(self._encode(text), encoded.ids) if within is None else within

    def _cache_end(self, r: _Render, encoded: Encoded) -> int:
        if r.marked is None:
            return 0
        # Not located (no template, or one that will not render the head): the whole prompt.
        at = self._prefix_end(r.marked, r, encoded) if r.messages is not None else None
        return len(encoded.ids) if at is None else at

    def prompt(self, request: GenerationRequest) -> RenderedPrompt:
        started = time.perf_counter()
        r = self._render(request)
        rendered = time.perf_counter()
        encoded = self.encoder.encode(r.text)
        tokens = list(encoded.ids)  # the encoder keeps its own
        encode_ms = (time.perf_counter() - rendered) * 1000
        thinking_open = opens_thinking(r.text, self.tokenizer)
        cache_end = self._cache_end(r, encoded)
        messages = r.messages
        if not messages or len(messages) < 2:
            return RenderedPrompt(
                tokens,
                thinking_open=thinking_open,
                cache_end=cache_end,
                phases=_phases(started, encode_ms),
                encoded=encoded,
            )
        # Render the leading system message, and everything before the last message, alone;
        # where their tokens agree with the full prompt's is a message boundary.
        heads = []
        if messages[0]["role"] == "system":
            heads.append(messages[:1])
        if len(messages) > 2 or not heads:
            heads.append(messages[:-1])
        boundaries = set()
        system_end = 0
        for head in heads:
            at = self._prefix_end(head, r, encoded)
            if at is not None and 0 < at < len(tokens):
                boundaries.add(at)
                if head[-1]["role"] == "system" and len(head) == 1:
                    system_end = at
        return RenderedPrompt(
            tokens,
            tuple(sorted(boundaries)),
            system_end,
            thinking_open,
            cache_end,
            _phases(started, encode_ms),
            encoded,
        )
