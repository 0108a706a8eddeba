"""Turn engine events into the Messages API's stream events, and into a final Message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
    SignatureDelta,
    StreamEvent,
    TextDeltaPayload,
    ThinkingDeltaPayload,
)
from pensieve_claude_types import Message, TextBlock, ThinkingBlock, ThinkingDisplay, ToolUseBlock, Usage
from pensieve_core import (
    Failed,
    Finished,
    GenerationEvent,
    Started,
    TextDelta,
    ThinkingDelta,
    ThinkingEnd,
    ToolInputDelta,
    ToolUseEnd,
    ToolUseStart,
)

from .signatures import ThinkingSigner


class MessageAssembler:
    """Keeps the stream's invariants: message_start first, block indices 0..n, every opened
    block closed, message_delta then message_stop last, or one error event and nothing after."""

    def __init__(
        self, message_id: str, model: str, signer: ThinkingSigner | None = None, display: ThinkingDisplay = "summarized"
    ) -> None:
        self.message = Message(id=message_id, model=model, content=[], usage=Usage())
        self._open_index: int | None = None
        self.failed: Failed | None = None
        # Text, thinking and tool-input deltas sent: about one per token (logged on a disconnect).
        self.deltas = 0
        self._signer = signer
        # display "omitted" (or "updates"): thinking text is kept here for its signature, never sent.
        self._omitted = display != "summarized"
        self._hidden = ""

    def feed(self, event: GenerationEvent) -> Iterator[StreamEvent]:
        if self.failed is not None:
            return  # one error event, and nothing after it
        if isinstance(event, (TextDelta, ThinkingDelta, ToolInputDelta)):
            self.deltas += 1
        if isinstance(event, Started):
            usage = self.message.usage
            usage.cache_read_input_tokens = event.cache_read_tokens
            usage.cache_creation_input_tokens = event.cache_creation_tokens
            usage.input_tokens = event.prompt_tokens - event.cache_read_tokens - event.cache_creation_tokens
            yield MessageStart(message=self._snapshot())
        elif isinstance(event, TextDelta):
            block = self._current(TextBlock)
            if block is None:
                yield from self._open(TextBlock(text=""), TextBlock(text=""))
                block = self._current(TextBlock)
            assert block is not None
            block.text += event.text
            yield ContentBlockDelta(index=self._index(), delta=TextDeltaPayload(text=event.text))
        elif isinstance(event, ThinkingDelta):
            block = self._current(ThinkingBlock)
            if block is None:
                yield from self._open(
                    ThinkingBlock(thinking="", signature=""), ThinkingBlock(thinking="", signature="")
                )
                block = self._current(ThinkingBlock)
            assert block is not None
            if self._omitted:  # the API sends no thinking_delta then: the block opens, later its signature
                self._hidden += event.thinking
            else:
                block.thinking += event.thinking
                yield ContentBlockDelta(index=self._index(), delta=ThinkingDeltaPayload(thinking=event.thinking))
        elif isinstance(event, ThinkingEnd):
            yield from self._close_open_block()
        elif isinstance(event, ToolUseStart):
            yield from self._open(
                ToolUseBlock(id=event.id, name=event.name, input={}),
                ToolUseBlock(id=event.id, name=event.name, input={}),
            )
        elif isinstance(event, ToolInputDelta):
            if self._current(ToolUseBlock) is not None:
                yield ContentBlockDelta(index=self._index(), delta=InputJsonDelta(partial_json=event.partial_json))
        elif isinstance(event, ToolUseEnd):
            block = self._current(ToolUseBlock)
            if block is not None:
                block.input = event.input
                yield from self._close_open_block()
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

    def _current(self, kind: type) -> Any:
        if self._open_index is None:
            return None
        block = self.message.content[self._open_index]
        return block if isinstance(block, kind) else None

    def _index(self) -> int:
        assert self._open_index is not None
        return self._open_index

    def _open(self, block: Any, announced: Any) -> Iterator[StreamEvent]:
        yield from self._close_open_block()
        self.message.content.append(block)
        self._open_index = len(self.message.content) - 1
        yield ContentBlockStart(index=self._open_index, content_block=announced)

    def _close_open_block(self) -> Iterator[StreamEvent]:
        if self._open_index is None:
            return
        block = self.message.content[self._open_index]
        if isinstance(block, ThinkingBlock):
            # The signature goes out last, just before the block stops, as the API sends it.
            block.signature = self._signature(block)
            yield ContentBlockDelta(index=self._open_index, delta=SignatureDelta(signature=block.signature))
        yield ContentBlockStop(index=self._open_index)
        self._open_index = None

    def _signature(self, block: ThinkingBlock) -> str:
        if self._signer is None:
            return ""
        if self._omitted:
            hidden, self._hidden = self._hidden, ""
            return self._signer.sign_omitted(hidden)
        return self._signer.sign(block.thinking)

    def _snapshot(self) -> Message:
        u = self.message.usage
        return Message(
            id=self.message.id,
            model=self.message.model,
            content=[],
            usage=Usage(u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens),
        )
