"""Wire types of the Messages API: request bodies, stream events and their SSE encoding,
and the error envelope."""

from .errors import ErrorEnvelope, encode_envelope, envelope_for, error_envelope
from .events import (
    BlockDelta,
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
    Ping,
    SignatureDelta,
    StreamEvent,
    TextDeltaPayload,
    ThinkingDeltaPayload,
)
from .limits import COUNT_TOKENS_MAX_BODY_BYTES
from .requests import (
    CountTokensRequest,
    CountTokensResponse,
    MessagesRequest,
    decode_count_tokens_request,
    decode_messages_request,
)
from .sse import encode_event, keepalive_comment

__all__ = [
    "COUNT_TOKENS_MAX_BODY_BYTES",
    "BlockDelta",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "CountTokensRequest",
    "CountTokensResponse",
    "ErrorDetail",
    "ErrorEnvelope",
    "ErrorEvent",
    "InputJsonDelta",
    "MessageDelta",
    "MessageDeltaBody",
    "MessageDeltaUsage",
    "MessageStart",
    "MessageStop",
    "MessagesRequest",
    "Ping",
    "SignatureDelta",
    "StreamEvent",
    "TextDeltaPayload",
    "ThinkingDeltaPayload",
    "decode_count_tokens_request",
    "decode_messages_request",
    "encode_envelope",
    "encode_event",
    "envelope_for",
    "error_envelope",
    "keepalive_comment",
]
