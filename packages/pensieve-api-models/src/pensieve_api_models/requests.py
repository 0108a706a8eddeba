"""Request bodies, decoded once per endpoint with a reused msgspec Decoder.

Validation messages keep msgspec's JSON path (``Expected `int`, got `str` - at `$.max_tokens` ``).
"""

from __future__ import annotations

from typing import Annotated, Any, Self, TypeVar

import msgspec

from pensieve_claude_types import (
    CacheControl,
    Effort,
    JsonOutputFormat,
    MessageParam,
    OutputConfig,
    TextBlockParam,
    ThinkingAdaptive,
    ThinkingConfig,
    ThinkingDisplay,
    ThinkingEnabled,
    Tool,
    ToolChoice,
)
from pensieve_core import GenerationRequest
from pensieve_core.errors import InvalidRequestError

from . import limits
from .checks import check_budget, check_forced_tool, check_messages, check_tools
from .nesting import deeper_than, path_past

MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=limits.MAX_TOKENS_LIMIT)]
UnitInterval = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
# Past the vocabulary it means "no top-k": the engine clamps it.
TopK = Annotated[int, msgspec.Meta(ge=0)]
StopSequence = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.MAX_STOP_SEQUENCE_CHARS)]
StopSequences = Annotated[list[StopSequence], msgspec.Meta(max_length=limits.MAX_STOP_SEQUENCES)]
Tools = Annotated[list[Tool], msgspec.Meta(max_length=limits.MAX_TOOLS)]


class _Conversation(msgspec.Struct, kw_only=True):
    """What both bodies carry: the conversation and all that shapes how it renders. Field rules
    are the annotations' Meta (msgspec names the path); validate() holds the cross-field ones."""

    model: str
    messages: list[MessageParam]
    system: str | list[TextBlockParam] | None = None
    tools: Tools | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    # Effort can change the rendering (enable_thinking, reasoning_effort): count as generation renders.
    output_config: OutputConfig | None = None

    def validate(self) -> Self:
        check_messages(self.messages)
        check_tools(self.tools, self.tool_choice)
        return self

    @property
    def effort(self) -> Effort | None:
        return effort_of(self.messages, self.output_config)


class MessagesRequest(_Conversation, kw_only=True):
    """POST /v1/messages. Unknown fields are accepted and ignored, as the API does."""

    max_tokens: MaxTokens
    stream: bool = False
    temperature: UnitInterval | None = None
    top_p: UnitInterval | None = None
    top_k: TopK | None = None
    stop_sequences: StopSequences | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    # Automatic prompt caching: the breakpoint sits on the last cacheable block.
    cache_control: CacheControl | None = None
    # The structured-outputs beta's shape (before output_config): the same format, top level.
    output_format: JsonOutputFormat | None = None

    def validate(self) -> Self:
        super().validate()
        check_budget(self.thinking, max_tokens=self.max_tokens)
        check_forced_tool(self.thinking, self.tool_choice, self.effort)
        return self

    def to_generation(self, request_id: str = "") -> GenerationRequest:
        return GenerationRequest(
            messages=self.messages,
            max_tokens=self.max_tokens,
            system=self.system,
            tools=self.tools,
            tool_choice=self.tool_choice,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop_sequences=self.stop_sequences,
            thinking=self.thinking,
            output_schema=self._output_schema(),
            effort=self.effort,
            cache_control=self.cache_control,
            request_id=request_id,
        )

    @property
    def thinking_display(self) -> ThinkingDisplay:
        """How thinking blocks come back; "summarized" (the text) unless the request says "omitted"."""
        thinking = self.thinking
        shown = thinking.display if isinstance(thinking, (ThinkingEnabled, ThinkingAdaptive)) else None
        return shown or "summarized"

    def _output_schema(self) -> dict[str, Any] | None:
        found = (self.output_config.format if self.output_config else None) or self.output_format
        return found.schema if found else None


class CountTokensRequest(_Conversation, kw_only=True):
    """POST /v1/messages/count_tokens: a messages body without max_tokens."""

    def to_generation(self, request_id: str = "") -> GenerationRequest:
        return GenerationRequest(
            messages=self.messages,
            max_tokens=1,
            system=self.system,
            tools=self.tools,
            tool_choice=self.tool_choice,
            thinking=self.thinking,
            effort=self.effort,
            request_id=request_id,
        )


class CountTokensResponse(msgspec.Struct):
    input_tokens: int


def effort_of(messages: list[MessageParam], config: OutputConfig | None) -> Effort | None:
    """The effort for the next answer: a message's own output_config applies from that message
    on (Claude Code changes effort mid-conversation that way), so the last one wins."""
    for message in reversed(messages):
        if message.output_config is not None and message.output_config.effort is not None:
            return message.output_config.effort
    return config.effort if config else None


_messages_decoder = msgspec.json.Decoder(MessagesRequest)
_count_decoder = msgspec.json.Decoder(CountTokensRequest)


_Body = TypeVar("_Body", bound=_Conversation)


def _decode(decoder: msgspec.json.Decoder[_Body], body: bytes) -> _Body:
    if deeper_than(body, limits.MAX_NESTING_DEPTH):
        raise InvalidRequestError(
            f"arrays and objects nest more than {limits.MAX_NESTING_DEPTH} levels deep"
            f" - at `{path_past(body, limits.MAX_NESTING_DEPTH)}`"
        )
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc


def decode_messages_request(body: bytes) -> MessagesRequest:
    return _decode(_messages_decoder, body).validate()


def decode_count_tokens_request(body: bytes) -> CountTokensRequest:
    return _decode(_count_decoder, body).validate()
