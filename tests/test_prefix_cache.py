"""The prefix cache, seen through usage: a conversation's next turn reads back everything the
previous turn prefilled and generated."""

import httpx2 as httpx
from server_process import CHAT_REPLY

KEY = {"x-api-key": "pensieve-local-key"}


def ask(server, messages):
    r = httpx.post(
        server.url + "/v1/messages",
        headers=KEY,
        timeout=120,
        json={"model": "m", "max_tokens": 50, "system": "You are terse.", "messages": messages},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_next_turn_reads_the_previous_prompt_and_answer_from_the_cache(chat_server):
    first_turn = [{"role": "user", "content": "A question about prefix caching, turn one."}]
    first = ask(chat_server, first_turn)
    u1 = first["usage"]
    assert first["content"][0]["text"] == CHAT_REPLY
    prompt1 = u1["input_tokens"] + u1["cache_creation_input_tokens"] + u1["cache_read_input_tokens"]
    # Earlier tests on this server may share the template's first tokens; the rest is new, and
    # with no cache_control it is input, as the API counts it.
    assert u1["input_tokens"] == prompt1 - u1["cache_read_input_tokens"] > 10
    assert u1["cache_creation_input_tokens"] == 0

    second = ask(
        chat_server,
        [*first_turn, {"role": "assistant", "content": CHAT_REPLY}, {"role": "user", "content": "And turn two?"}],
    )
    u2 = second["usage"]
    # Turn one's prompt, its reply and the end-of-turn token are reused; only the new tail runs.
    assert u2["cache_read_input_tokens"] == prompt1 + u1["output_tokens"]
    prompt2 = u2["input_tokens"] + u2["cache_creation_input_tokens"] + u2["cache_read_input_tokens"]
    counted = httpx.post(
        chat_server.url + "/v1/messages/count_tokens",
        headers=KEY,
        timeout=30,
        json={
            "model": "m",
            "system": "You are terse.",
            "messages": [
                *first_turn,
                {"role": "assistant", "content": CHAT_REPLY},
                {"role": "user", "content": "And turn two?"},
            ],
        },
    ).json()
    assert prompt2 == counted["input_tokens"]
    assert u2["input_tokens"] == prompt2 - u2["cache_read_input_tokens"]


def test_cache_reads_show_in_metrics(chat_server):
    for _ in range(2):
        ask(chat_server, [{"role": "user", "content": "Counting cache reads."}])
    text = httpx.get(chat_server.url + "/metrics", headers=KEY, timeout=10).text
    line = next(row for row in text.splitlines() if row.startswith("pensieve_cache_read_tokens_total "))
    assert float(line.split()[1]) > 0


def test_a_restarted_server_reads_the_system_prompt_from_disk(tmp_path):
    """The persisted prefix, end to end: serve, stop, list it with the CLI, serve again from
    the same home and read it back, clear it with the CLI."""
    import json
    import subprocess
    import sys

    from server_process import ServerProcess, free_port, isolated_env

    from pensieve_model_support.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "model", reply=CHAT_REPLY)
    env = isolated_env(tmp_path / "home")
    system = "You are the restart test. " + "Follow the project's conventions. " * 40
    messages = [{"role": "user", "content": "Same question before and after"}]

    def serve_and_ask():
        port = free_port()
        proc = ServerProcess(["--model", str(model), "--port", str(port)], env, port, tmp_path / f"log{port}")
        proc.wait_ready()
        try:
            r = httpx.post(
                proc.url + "/v1/messages",
                headers=KEY,
                timeout=120,
                json={"model": "m", "max_tokens": 50, "system": system, "messages": messages},
            )
            assert r.status_code == 200, r.text
            return r.json()["usage"]
        finally:
            assert proc.stop() == 0, proc.output()

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "pensieve_cli", "cache", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cold = serve_and_ask()
    listed = json.loads(cli("list", "--json"))
    assert len(listed) == 1 and listed[0]["model"] == model.name and listed[0]["tokens"] > 150
    warm = serve_and_ask()
    assert cold["cache_read_input_tokens"] == 0
    assert warm["cache_read_input_tokens"] == listed[0]["tokens"]
    assert "deleted 1 persisted prefixes" in cli("clear", "--yes")
    assert json.loads(cli("list", "--json")) == []


def test_a_tool_loaded_mid_session_keeps_the_turns_before_it_cached(chat_server):
    """Claude Code lists deferred tools (defer_loading) and loads one through ToolSearch: the
    turn after reads everything before the load back from the cache."""

    def tools(*deferred):
        listed = [{"name": "ToolSearch", "description": "Finds tools.", "input_schema": {"type": "object"}}]
        return listed + [
            {"name": n, "description": f"{n} a file.", "input_schema": {"type": "object"}, "defer_loading": True}
            for n in deferred
        ]

    def turn(messages, listed):
        body = {"model": "m", "max_tokens": 20, "system": "You are a coding agent.", "tools": listed}
        r = httpx.post(chat_server.url + "/v1/messages", headers=KEY, timeout=120, json={**body, "messages": messages})
        assert r.status_code == 200, r.text
        return r.json()["usage"]

    first = [{"role": "user", "content": "Lint the file, turn one of a tool-loading session."}]
    u1 = turn(first, tools("Lint"))
    prompt1 = u1["input_tokens"] + u1["cache_creation_input_tokens"] + u1["cache_read_input_tokens"]
    search = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "tool_reference", "tool_name": "Lint"}],
                }
            ],
        },
    ]
    u2 = turn([*first, *search], tools("Lint", "Format"))  # and one more deferred tool listed
    # All of turn one's prompt but its generation prompt (`<|im_start|>assistant\n`) is reused.
    assert u2["cache_read_input_tokens"] >= prompt1 - 3
