"""Real JavaScript clients against live server processes: the TypeScript SDK's
MessageStream.finalMessage(), and Claude Code 2.1.332 headless."""

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
    out = subprocess.run([shutil.which("node"), "final_message.mjs"], cwd=node_dir, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    message = result["message"]
    assert [(b["type"], b["text"]) for b in message["content"]] == [("text", CHAT_REPLY)]
    assert result["text"] == CHAT_REPLY
    assert message["stop_reason"] == "end_turn" and message["model"] == "claude-sonnet-5-5"


def run_claude(node_dir, server, tmp_path):
    return subprocess.run(
        [str(CLAUDE), "-p", "Say hello", "--output-format", "json"],
        cwd=tmp_path, env=claude_env(server.url, tmp_path), capture_output=True, text=True, timeout=600,
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
