"""Turn engine events into the Messages API's stream events, and into a final Message."""

from __future__ import annotations

from collections.abc import Iterator

from pensieve_api_models import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    ErrorDetail,
    ErrorEvent,
    InputJsonDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    StreamEvent,
    TextDeltaPayload,
)
import msgspec

from pensieve_claude_types import Message, TextBlock, ToolUseBlock, Usage
from pensieve_core import Failed, Finished, GenerationEvent, Started, TextDelta, ToolCall

_json = msgspec.json.Encoder()


class MessageAssembler:
    """Keeps the stream's invariants: message_start first, block indices 0..n, every opened
    block closed, message_delta then message_stop last, or one error event and nothing after."""

    def __init__(self, message_id: str, model: str) -> None:
        self.message = Message(id=message_id, model=model, content=[], usage=Usage())
        self._open_index: int | None = None
        self.failed: Failed | None = None

    def feed(self, event: GenerationEvent) -> Iterator[StreamEvent]:
        if isinstance(event, Started):
            usage = self.message.usage
            usage.cache_read_input_tokens = event.cache_read_tokens
            usage.cache_creation_input_tokens = event.cache_creation_tokens
            usage.input_tokens = event.prompt_tokens - event.cache_read_tokens - event.cache_creation_tokens
            yield MessageStart(message=self._snapshot())
        elif isinstance(event, TextDelta):
            if self._open_index is None:
                self.message.content.append(TextBlock(text=""))
                self._open_index = len(self.message.content) - 1
                yield ContentBlockStart(index=self._open_index, content_block=TextBlock(text=""))
            block = self.message.content[self._open_index]
            assert isinstance(block, TextBlock)
            block.text += event.text
            yield ContentBlockDelta(index=self._open_index, delta=TextDeltaPayload(text=event.text))
        elif isinstance(event, ToolCall):
            yield from self._close_open_block()
            self.message.content.append(ToolUseBlock(id=event.id, name=event.name, input=event.input))
            index = len(self.message.content) - 1
            yield ContentBlockStart(index=index, content_block=ToolUseBlock(id=event.id, name=event.name, input={}))
            # The whole input at once: a complete JSON text is trivially a valid JSON prefix.
            yield ContentBlockDelta(index=index, delta=InputJsonDelta(partial_json=_json.encode(event.input).decode()))
            yield ContentBlockStop(index=index)
        elif isinstance(event, Finished):
            yield from self._close_open_block()
            self.message.stop_reason = event.stop_reason
            self.message.stop_sequence = event.stop_sequence
            self.message.usage.output_tokens = event.output_tokens
            usage = self.message.usage
            yield MessageDelta(
                delta=MessageDeltaBody(stop_reason=event.stop_reason, stop_sequence=event.stop_sequence),
                usage=MessageDeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=usage.input_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                ),
            )
            yield MessageStop()
        elif isinstance(event, Failed):
            self.failed = event
            yield ErrorEvent(error=ErrorDetail(type=event.error_type, message=event.message))

    def _close_open_block(self) -> Iterator[StreamEvent]:
        if self._open_index is not None:
            yield ContentBlockStop(index=self._open_index)
            self._open_index = None

    def _snapshot(self) -> Message:
        u = self.message.usage
        return Message(
            id=self.message.id,
            model=self.message.model,
            content=[],
            usage=Usage(u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens),
        )
