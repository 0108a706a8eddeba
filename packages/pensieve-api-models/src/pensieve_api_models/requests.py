"""Request bodies, decoded once per endpoint with a reused msgspec Decoder.

Validation messages keep msgspec's JSON path (``Expected `int`, got `str` - at `$.max_tokens` ``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from pensieve_claude_types import (
    MessageParam,
    TextBlockParam,
    ThinkingConfig,
    Tool,
    ToolChoice,
)
from pensieve_core import GenerationRequest
from pensieve_core.errors import InvalidRequestError


class MessagesRequest(msgspec.Struct, kw_only=True):
    """POST /v1/messages. Unknown fields are accepted and ignored, as the API does."""

    model: str
    max_tokens: int
    messages: list[MessageParam]
    system: str | list[TextBlockParam] | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None

    def validate(self) -> MessagesRequest:
        if self.max_tokens < 1:
            raise InvalidRequestError(f"max_tokens: must be at least 1, got {self.max_tokens} - at `$.max_tokens`")
        _validate_messages(self.messages)
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
            request_id=request_id,
        )


class CountTokensRequest(msgspec.Struct, kw_only=True):
    """POST /v1/messages/count_tokens: a messages body without max_tokens."""

    model: str
    messages: list[MessageParam]
    system: str | list[TextBlockParam] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None

    def validate(self) -> CountTokensRequest:
        _validate_messages(self.messages)
        return self

    def to_generation(self, request_id: str = "") -> GenerationRequest:
        return GenerationRequest(
            messages=self.messages, max_tokens=1, system=self.system, tools=self.tools,
            tool_choice=self.tool_choice, thinking=self.thinking, request_id=request_id,
        )


class CountTokensResponse(msgspec.Struct):
    input_tokens: int


def _validate_messages(messages: list[MessageParam]) -> None:
    if not messages:
        raise InvalidRequestError("messages: at least one message is required - at `$.messages`")
    for i, message in enumerate(messages):
        last_assistant = i == len(messages) - 1 and message.role == "assistant"
        if not message.content and not last_assistant:
            # The API's rule: only a final assistant turn (a prefill) may be empty.
            raise InvalidRequestError(
                f"messages.{i}: all messages must have non-empty content except for the optional "
                f"final assistant message - at `$.messages[{i}].content`"
            )


_messages_decoder = msgspec.json.Decoder(MessagesRequest)
_count_decoder = msgspec.json.Decoder(CountTokensRequest)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
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
