"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_api_models

EXPECTED = {
    "BlockDelta",
    "COUNT_TOKENS_MAX_BODY_BYTES",
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
}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_api_models).items()
        if not name.startswith("_") and not (isinstance(value, ModuleType) and name not in pensieve_api_models.__all__)
    }
    assert set(pensieve_api_models.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
