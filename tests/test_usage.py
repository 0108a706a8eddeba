"""Usage as the API counts it, through the official client: without cache_control the whole
prompt is input; with it, what is prefilled up to the last breakpoint is cache creation; reads
are what the prefix cache served. The three always sum to count_tokens."""

import anthropic
import pytest

KEY = "pensieve-local-key"
CACHED = {"type": "ephemeral"}


@pytest.fixture
def sdk(chat_server):
    return anthropic.Anthropic(base_url=chat_server.url, api_key=KEY, max_retries=0)


def total(u):
    return u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens


def ask(sdk, streamed, **body):
    """The usage of message_start and message_delta (the same object, not streamed)."""
    body = {"model": "m", "max_tokens": 8, **body}
    if not streamed:
        u = sdk.messages.create(**body).usage
        return u, u
    with sdk.messages.stream(**body) as stream:
        events = list(stream)
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = next(e for e in events if e.type == "message_delta").usage
    return start, delta


def counted(sdk, **body):
    return sdk.messages.count_tokens(model="m", **body).input_tokens


@pytest.mark.parametrize("streamed", [False, True])
def test_without_cache_control_the_prompt_is_input(sdk, streamed):
    body = {"messages": [{"role": "user", "content": f"A cold question, no cache_control (streamed={streamed})."}]}
    for u in ask(sdk, streamed, **body):
        assert u.input_tokens > 0 and u.cache_creation_input_tokens == 0
        assert total(u) == counted(sdk, **body)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_cached_system_prompt_is_created_then_read(sdk, streamed):
    system = [{"type": "text", "text": f"You are the usage test (streamed={streamed}). " * 6, "cache_control": CACHED}]
    messages = [{"role": "user", "content": "A question after a cached system prompt."}]
    body = {"system": system, "messages": messages}
    system_only = counted(sdk, system=system, messages=[{"role": "user", "content": "x"}])
    for u in ask(sdk, streamed, **body):
        # Creation ends where the system prompt ends; the user turn after it is input.
        assert 20 < u.cache_creation_input_tokens + u.cache_read_input_tokens < system_only
        assert u.input_tokens > 0 and total(u) == counted(sdk, **body)
    for u in ask(sdk, streamed, **body):  # the repeat reads what the first prefilled
        assert u.cache_read_input_tokens > system_only and u.cache_creation_input_tokens == 0
        assert total(u) == counted(sdk, **body)


def test_automatic_caching_counts_the_whole_conversation_as_created(sdk):
    body = {"messages": [{"role": "user", "content": "Automatic caching puts the breakpoint on this block."}]}
    u = sdk.messages.create(model="m", max_tokens=8, cache_control=CACHED, **body).usage
    # Only the template's assistant header after the last block is input.
    assert u.cache_creation_input_tokens > 10 and 0 < u.input_tokens < 8
    assert total(u) == counted(sdk, **body)
