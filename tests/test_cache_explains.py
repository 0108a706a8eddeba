"""The prefix cache explains itself: each answer says how much of the prompt was reused and,
when reuse ended early, where (the token and the part of the prompt), in a header, a log line
and /metrics counters, so a slow Claude Code turn can be traced to what changed."""

import re

import httpx2 as httpx
from server_process import CHAT_REPLY

KEY = {"x-api-key": "pensieve-local-key"}
SYSTEM = "You explain caches. " + "Every turn starts with these same instructions. " * 12


def ask(server, system, messages, stream=False):
    body = {"model": "m", "max_tokens": 20, "system": system, "messages": messages, "stream": stream}
    r = httpx.post(server.url + "/v1/messages", headers=KEY, json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.headers["pensieve-prefix-cache"]


def parsed(header):
    return dict(re.findall(r'([\w-]+)=("[^"]*"|\d+)', header))


def counter(server, name):
    text = httpx.get(server.url + "/metrics", headers=KEY).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def test_each_answer_says_what_was_reused_and_where_reuse_ended(chat_server):
    hits, misses = (counter(chat_server, f"pensieve_prefix_cache_{k}_total") for k in ("hits", "misses"))
    turn = [{"role": "user", "content": "Explain the first turn."}]
    cold = parsed(ask(chat_server, SYSTEM, turn))
    assert int(cold["read"]) < int(cold["prompt"]) and cold["ended-in"] == '"system and tools"'

    # The next turn reads the previous prompt and answer; reuse ends where the history goes on
    # past what was generated (the template's newline after the answer's end-of-turn token).
    nxt = [*turn, {"role": "assistant", "content": CHAT_REPLY}, {"role": "user", "content": "And the next one?"}]
    warm = parsed(ask(chat_server, SYSTEM, nxt, stream=True))
    assert int(warm["read"]) > int(cold["prompt"]) and warm["ended-in"] in ('"conversation"', '"last message"')

    # The system prompt changed near its end: reuse ends inside it, after its unchanged start.
    changed = parsed(ask(chat_server, SYSTEM + " One more rule.", nxt))
    assert changed["ended-in"] == '"system and tools"' and 50 < int(changed["ended-at"]) == int(changed["read"])

    assert counter(chat_server, "pensieve_prefix_cache_hits_total") >= hits + 2
    assert counter(chat_server, "pensieve_prefix_cache_misses_total") >= misses
    assert "prefix_cache_reuse" in chat_server.output() and "reuse_ended_in" in chat_server.output()
