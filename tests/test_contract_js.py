"""Real JavaScript clients against live server processes: the TypeScript SDK's
MessageStream.finalMessage(), and Claude Code 2.1.332 headless (answering, running a tool the
model called, and compacting on a too-long prompt)."""

import json
import os
import shutil
import subprocess

import pytest
from node_clients import CLAUDE, claude_env, install_node_clients
from server_process import CHAT_REPLY


@pytest.fixture(scope="session")
def node_dir():
    return install_node_clients()


def test_typescript_sdk_final_message(node_dir, chat_server):
    env = {**os.environ, "PENSIEVE_URL": chat_server.url, "PENSIEVE_KEY": "pensieve-local-key"}
    out = subprocess.run(
        [shutil.which("node"), "final_message.mjs"], cwd=node_dir, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    message = result["message"]
    assert [(b["type"], b["text"]) for b in message["content"]] == [("text", CHAT_REPLY)]
    assert result["text"] == CHAT_REPLY
    assert message["stop_reason"] == "end_turn" and message["model"] == "claude-sonnet-5-5"


def run_claude(node_dir, server, tmp_path, *args, prompt="Say hello"):
    return subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json", *args],
        cwd=tmp_path,
        env=claude_env(server.url, tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_claude_code_headless_against_a_32k_model(node_dir, chat_server, tmp_path):
    out = run_claude(node_dir, chat_server, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["is_error"] is False
    assert result["result"] == CHAT_REPLY


def test_claude_code_shows_prompt_too_long_from_a_small_model(node_dir, server, tmp_path):
    out = run_claude(node_dir, server, tmp_path)
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["is_error"] is True and result["api_error_status"] == 400
    assert "Prompt is too long" in result["result"] and "limit 4096" in result["result"]


def test_claude_code_runs_the_tool_the_model_called(node_dir, bash_server, tmp_path):
    """The model answers with a Bash call in its own dialect; Claude Code receives a tool_use
    block, runs the command, and sends the result back (the model then calls again, until
    the turn limit)."""
    out = run_claude(
        node_dir, bash_server, tmp_path, "--allowedTools", "Bash", "--max-turns", "2", prompt="Create pensieve.txt"
    )
    result = json.loads(out.stdout)
    assert (tmp_path / "pensieve.txt").exists(), out.stdout + out.stderr
    assert result["subtype"] == "error_max_turns" and result["num_turns"] >= 2
    assert result["permission_denials"] == []
