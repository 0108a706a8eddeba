"""How each generation ended is counted, with its prompt: a failure after the 200 included."""

import re

AUTH = {"x-api-key": "test-key"}
BODY = {"model": "tiny", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def scrape(client) -> dict[str, float]:
    text = client.get("/metrics", headers=AUTH).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^(pensieve_\S+) (\S+)$", text, re.M)}


def ended(metrics, outcome):
    return metrics.get(f'pensieve_generations_ended_total{{outcome="{outcome}"}}', 0.0)


def test_a_generation_that_fails_midway_counts_as_failed_with_its_prompt(client, failing_midway):
    before = scrape(client)  # /metrics runs no forward pass: the fault does not touch it
    r = client.post("/v1/messages", json={**BODY, "stream": True}, headers=AUTH)
    assert r.status_code == 200 and "event: error" in r.text
    after = scrape(client)
    assert ended(after, "failed") - ended(before, "failed") == 1
    assert ended(after, "finished") == ended(before, "finished")
    assert after["pensieve_input_tokens_total"] - before["pensieve_input_tokens_total"] > 0
    assert after["pensieve_cache_read_tokens_total"] <= after["pensieve_input_tokens_total"]
