"""The CLI as a user runs it: real subprocesses for start --daemon → status → stop, and
`pensieve claude --print-env` exports that Claude Code accepts."""

import json
import os
import subprocess
import sys

from node_clients import CLAUDE, install_node_clients
from server_process import CHAT_REPLY, free_port, isolated_env


def pensieve(*args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "pensieve_cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_daemon_start_status_stop(tiny_model_dir, tmp_path):
    env = isolated_env(tmp_path)
    env["PENSIEVE_PORT"] = str(free_port())
    # A key given only to `start`: status and claude must learn it from the daemon's record.
    started = pensieve("start", "--daemon", "--model", str(tiny_model_dir), "--api-key", "only-on-the-flag", env=env)
    assert started.returncode == 0, started.stderr
    assert "pensieve running (pid" in started.stdout
    pid_file = tmp_path / "pensieve" / "pensieve.pid"
    pid = int(pid_file.read_text())
    assert (tmp_path / "pensieve" / "daemon.json").stat().st_mode & 0o077 == 0  # it holds the key
    try:
        again = pensieve("start", "--daemon", "--model", str(tiny_model_dir), env=env)
        assert again.returncode == 1 and "already running" in again.stderr
        status = pensieve("status", "--json", env=env)
        info = json.loads(status.stdout)
        assert status.returncode == 0 and info["running"] is True and info["pid"] == pid
        assert info["model"] == tiny_model_dir.name and info["device"].startswith("cpu")
        assert info["requests"] >= 1 and "uptime_s" in info  # /v1/status answered: the key was right
        assert "pensieve is running on" in pensieve("status", env=env).stdout
    finally:
        stopped = pensieve("stop", env=env)
    assert stopped.returncode == 0 and f"pensieve stopped (pid {pid})" in stopped.stdout
    assert not pid_file.exists()
    gone = pensieve("status", "--json", env=env)
    assert gone.returncode == 3 and json.loads(gone.stdout)["running"] is False
    assert (tmp_path / "pensieve" / "logs" / "pensieve.log").read_text().count("serving") >= 1


def test_print_env_runs_claude_code(chat_server, tmp_path):
    install_node_clients()
    env = isolated_env(tmp_path)
    out = pensieve("claude", "--print-env", "--port", str(chat_server.port), env=env)
    assert out.returncode == 0, out.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.strip().splitlines())
    claude_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    claude_env.update(exports, HOME=str(tmp_path))
    result = subprocess.run(
        [str(CLAUDE), "-p", "hello", "--output-format", "json"],
        cwd=tmp_path,
        env=claude_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["result"] == CHAT_REPLY
