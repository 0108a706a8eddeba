"""The prefix cache, seen through usage: a conversation's next turn reads back everything the
previous turn prefilled and generated."""

import httpx2 as httpx
from server_process import CHAT_REPLY

KEY = {"x-api-key": "pensieve-local-key"}


def ask(server, messages):
    r = httpx.post(server.url + "/v1/messages", headers=KEY, timeout=120,
                   json={"model": "m", "max_tokens": 50, "system": "You are terse.", "messages": messages})
    assert r.status_code == 200, r.text
    return r.json()


def test_next_turn_reads_the_previous_prompt_and_answer_from_the_cache(chat_server):
    first_turn = [{"role": "user", "content": "A question about prefix caching, turn one."}]
    first = ask(chat_server, first_turn)
    u1 = first["usage"]
    assert first["content"][0]["text"] == CHAT_REPLY
    prompt1 = u1["input_tokens"] + u1["cache_creation_input_tokens"] + u1["cache_read_input_tokens"]
    # Earlier tests on this server may share the template's first tokens; the rest is new.
    assert u1["cache_creation_input_tokens"] == prompt1 - u1["cache_read_input_tokens"] > 10

    second = ask(chat_server, [*first_turn, {"role": "assistant", "content": CHAT_REPLY},
                               {"role": "user", "content": "And turn two?"}])
    u2 = second["usage"]
    # Turn one's prompt, its reply and the end-of-turn token are reused; only the new tail runs.
    assert u2["cache_read_input_tokens"] == prompt1 + u1["output_tokens"]
    prompt2 = u2["input_tokens"] + u2["cache_creation_input_tokens"] + u2["cache_read_input_tokens"]
    counted = httpx.post(chat_server.url + "/v1/messages/count_tokens", headers=KEY, timeout=30, json={
        "model": "m", "system": "You are terse.", "messages": [*first_turn, {"role": "assistant", "content": CHAT_REPLY},
                                                               {"role": "user", "content": "And turn two?"}]}).json()
    assert prompt2 == counted["input_tokens"]
    assert u2["cache_creation_input_tokens"] == prompt2 - u2["cache_read_input_tokens"]


def test_cache_reads_show_in_metrics(chat_server):
    for _ in range(2):
        ask(chat_server, [{"role": "user", "content": "Counting cache reads."}])
    text = httpx.get(chat_server.url + "/metrics", headers=KEY, timeout=10).text
    line = next(l for l in text.splitlines() if l.startswith("pensieve_cache_read_tokens_total "))
    assert float(line.split()[1]) > 0
