"""Cross-package tests: the real `pensieve` process on a free port, real clients."""

from __future__ import annotations

import json
import os

import pytest
from server_process import BASH_REPLY, CHAT_REPLY, TOOL_REPLY, ServerProcess, free_port, isolated_env

from pensieve_model_support.testing import THINK_CHATML_TEMPLATE, TOOL_CHATML_TEMPLATE, build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def _serve(tmp_path_factory, model_dir, name, **env):
    home = tmp_path_factory.mktemp(f"{name}-home")
    port = free_port()
    environ = isolated_env(home)
    environ.update({f"PENSIEVE_{k.upper()}": str(v) for k, v in env.items()})
    args = ["--model", str(model_dir), "--port", str(port)]
    ranks = int(os.environ.get("PENSIEVE_TEST_RANKS", "1"))
    if ranks > 1:  # test_distributed.py runs API suites against a model sharded across ranks
        hostfile = home / "hosts.json"
        hostfile.write_text(json.dumps({"hosts": [{"ssh": "127.0.0.1"}] * ranks}))
        args += ["--hostfile", str(hostfile)]
    proc = ServerProcess(args, environ, port, home / "server.log")
    proc.wait_ready()
    return proc


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory):
    """Random weights, 4,096-token context; pings every 0.3 s of silence."""
    proc = _serve(tmp_path_factory, tiny_model_dir, "random", keepalive_seconds=0.3)
    yield proc
    assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory):
    """Says CHAT_REPLY and ends its turn; 32,768-token context (room for Claude Code's prompt)."""
    path = build_tiny_model(tmp_path_factory.mktemp("chat"), context_length=32768, reply=CHAT_REPLY)
    proc = _serve(tmp_path_factory, path, "chat")
    yield proc
    assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="session")
def tool_server(tmp_path_factory):
    """A Qwen-style tool template and tokens; answers every turn with TOOL_REPLY."""
    path = build_tiny_model(
        tmp_path_factory.mktemp("tools"), reply=TOOL_REPLY, tool_tokens=True, chat_template=TOOL_CHATML_TEMPLATE
    )
    proc = _serve(tmp_path_factory, path, "tools")
    yield proc
    assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="session")
def bash_server(tmp_path_factory):
    """A Qwen-style tool model that calls Claude Code's Bash tool every turn; 32K context."""
    path = build_tiny_model(
        tmp_path_factory.mktemp("bash"),
        context_length=32768,
        reply=BASH_REPLY,
        tool_tokens=True,
        chat_template=TOOL_CHATML_TEMPLATE,
    )
    proc = _serve(tmp_path_factory, path, "bash")
    yield proc
    assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="session")
def thinking_server(tmp_path_factory):
    """Random weights behind a reasoning template (<think> opened by the template)."""
    path = build_tiny_model(tmp_path_factory.mktemp("thinker"), chat_template=THINK_CHATML_TEMPLATE, think_tokens=True)
    proc = _serve(tmp_path_factory, path, "thinker")
    yield proc
    assert proc.stop() == 0, proc.output()
