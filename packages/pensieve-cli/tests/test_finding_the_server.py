"""`pensieve claude`, `status` and `config set` find the server where it runs (the daemon's record,
else the configuration), say when none answers, and never point Claude Code at a model too small
for its prompt. The server is the conftest's StandIn; `start --daemon` spawns nothing here."""

import json
import os
import subprocess
import sys

import pytest

from pensieve_cli import claude_cmd, daemon
from pensieve_core import load_settings

FALLBACK = {
    "id": "smollm2-135m",
    "source": "gguf",
    "context_length": 8192,
    "fallback_from": "phi-3-mini",
    "note": "phi-3-mini is not cached and could not be downloaded; serving the bundled smollm2-135m instead",
}


def exports(output):
    return dict(
        line.removeprefix("export ").split("=", 1) for line in output.splitlines() if line.startswith("export ")
    )


@pytest.fixture
def launched(monkeypatch):
    """Claude Code as `pensieve claude` would exec it: the environment it was given."""
    seen: list[dict] = []
    monkeypatch.setattr(claude_cmd.shutil, "which", lambda name: "/usr/local/bin/claude")

    def execvpe(program, argv, env):
        seen.append(env)
        raise SystemExit(0)

    monkeypatch.setattr(claude_cmd.os, "execvpe", execvpe)
    return seen


@pytest.fixture
def starts(stand_in, monkeypatch):
    """`daemon.start` brings the stand-in up instead of spawning a server: the flags it got."""
    health = stand_in.answers.pop("/health")
    calls: list[dict] = []

    def start(settings, flags):
        calls.append(flags)
        stand_in.answers["/health"] = health
        return health

    monkeypatch.setattr(daemon, "start", start)
    return calls


def record_daemon(tmp_path, port, pid=None):
    """What `start --daemon --port PORT` leaves in the home, for a process that lives."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    record = {"pid": pid or os.getpid(), "host": "127.0.0.1", "port": port, "certfile": None}
    (home / "daemon.json").write_text(json.dumps(record))


def test_claude_without_a_server_and_no_terminal_says_what_to_run(run, starts, launched):
    result = run("claude")
    assert result.exit_code == 1 and not starts and not launched
    (paragraph,) = result.output.strip().splitlines()
    assert "no server answers at http://127.0.0.1:" in paragraph and "Claude Code would wait on it" in paragraph
    assert "`pensieve start --daemon`" in paragraph and "pensieve claude --yes" in paragraph


def test_claude_asks_before_starting_a_server_on_a_terminal(run, starts, launched, monkeypatch):
    monkeypatch.setattr(claude_cmd, "_interactive", lambda: True)
    declined = run("claude", input="n\n")
    assert "Start one now? [Y/n]" in declined.output
    assert declined.exit_code == 1 and not starts and not launched
    accepted = run("claude", input="\n")
    assert accepted.exit_code == 0, accepted.output
    assert len(starts) == 1 and launched[0]["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")


def test_claude_yes_starts_a_server_without_asking(run, starts, launched):
    result = run("claude", "--yes", "--", "-p", "hi")
    assert result.exit_code == 0, result.output
    assert "Start one now?" not in result.output and "starting one" in result.output
    assert len(starts) == 1 and launched[0]["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "131072"


@pytest.mark.parametrize("print_env", [False, True], ids=["claude", "print-env"])
def test_claude_refuses_a_model_too_small_for_its_prompt(run, stand_in, launched, print_env):
    stand_in.answers["/health"] = {**stand_in.answers["/health"], "model": FALLBACK, "models": [FALLBACK]}
    stand_in.answers["/v1/models?limit=1000"] = stand_in.listing(
        **{"smollm2-135m": 8192, "claude-opus-5-5": 8192, "claude-sonnet-5-5": 8192, "claude-haiku-5-5": 8192}
    )
    result = run("claude", *(["--print-env"] if print_env else []))
    assert result.exit_code == 1 and not launched and "export" not in result.output
    (paragraph,) = result.output.strip().splitlines()
    assert "8,192 tokens" in paragraph and "standing in for phi-3-mini" in paragraph
    assert "phi-3-mini (128K tokens)" in paragraph and "`pensieve pull phi-3-mini`" in paragraph
    assert "`pensieve start --daemon --model phi-3-mini`" in paragraph


def test_claude_accepts_a_small_haiku_model_and_reads_an_older_server_from_health(run, stand_in, launched):
    # Only background prompts (titles, summaries) go to the haiku tier.
    stand_in.answers["/v1/models?limit=1000"] = stand_in.listing(
        **{"big": 65536, "smollm2-135m": 8192, "claude-opus-5-5": 65536, "claude-sonnet-5-5": 65536}
    )
    assert run("claude").exit_code == 0 and launched
    # Without /v1/models the main model /health names decides.
    del stand_in.answers["/v1/models?limit=1000"]
    stand_in.answers["/health"] = {**stand_in.answers["/health"], "model": FALLBACK}
    result = run("claude")
    assert result.exit_code == 1 and "smollm2-135m" in result.output and "8,192 tokens" in result.output


def test_status_and_claude_find_the_port_the_daemon_was_started_with(run, serve, tmp_path):
    elsewhere = serve()  # the configuration (PENSIEVE_PORT) points at a port where nothing listens
    record_daemon(tmp_path, elsewhere.port)
    info = json.loads(run("status", "--json").output)
    assert info["running"] is True and info["url"] == f"http://127.0.0.1:{elsewhere.port}"
    lines = exports(run("claude", "--print-env").output)
    assert lines["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{elsewhere.port}"
    assert lines["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "131072"
    assert run("open", "--print-url").output.startswith(f"http://127.0.0.1:{elsewhere.port}/#key=")


def test_a_record_whose_process_is_gone_is_ignored(run, tmp_path, free_port):
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    record_daemon(tmp_path, free_port(), pid=gone.pid)
    result = run("status", "--json")
    assert (
        result.exit_code == 3 and json.loads(result.output)["url"] == f"http://127.0.0.1:{os.environ['PENSIEVE_PORT']}"
    )
    assert not (tmp_path / "home" / "daemon.json").exists()


def test_start_daemon_records_its_port_and_names_the_fallback(run, stand_in, free_port, monkeypatch):
    """`start --daemon --port N` with the config elsewhere: the record lets `status` find it."""
    stand_in.answers["/health"] = {**stand_in.answers["/health"], "pid": os.getpid(), "model": FALLBACK}
    spawned: list[list[str]] = []

    class Process:  # the detached `pensieve start`: this test's own (living) process stands for it
        pid = os.getpid()

        def __init__(self, argv, **_):
            spawned.append(argv)

        def poll(self):
            return None

    monkeypatch.setattr(daemon.subprocess, "Popen", Process)
    monkeypatch.setenv("PENSIEVE_PORT", str(free_port()))
    started = run("start", "--daemon", "--port", str(stand_in.port))
    assert started.exit_code == 0, started.output
    assert spawned and "--port" in spawned[0]
    assert f"pensieve running (pid {os.getpid()}) on http://127.0.0.1:{stand_in.port}" in started.output
    assert "serving the bundled smollm2-135m instead" in started.output
    assert "`pensieve pull phi-3-mini`" in started.output
    shown = run("status").output
    assert f"pensieve is running on http://127.0.0.1:{stand_in.port}" in shown


def test_status_prints_no_none_and_names_the_fallback(run, stand_in, monkeypatch):
    stand_in.answers["/health"] = {**stand_in.answers["/health"], "model": FALLBACK}
    monkeypatch.setenv("PENSIEVE_API_KEY", "another-key")  # /v1/status refuses: no counts
    result = run("status")
    assert result.exit_code == 0, result.output
    assert "None" not in result.output and "requests        —" in result.output
    assert "model           smollm2-135m" in result.output
    assert "fallback        phi-3-mini is not cached and could not be downloaded" in result.output


def test_config_set_port_hints_at_a_restart_only_while_a_server_runs(run, stand_in, free_port, monkeypatch):
    running = run("config", "set", "port", str(free_port()))
    assert running.exit_code == 0
    assert f"the server running at http://127.0.0.1:{stand_in.port} uses the new port once restarted" in (
        running.output
    )
    monkeypatch.setenv("PENSIEVE_PORT", str(free_port()))  # nothing answers there
    idle = run("config", "set", "port", str(free_port()))
    assert idle.exit_code == 0 and "restarted" not in idle.output


def test_the_record_keeps_a_tls_daemons_scheme(run, tmp_path, free_port):
    port = free_port()
    record = {"pid": os.getpid(), "host": "0.0.0.0", "port": port, "certfile": "c.pem", "keyfile": "k.pem"}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "daemon.json").write_text(json.dumps(record))
    assert daemon.base_url(daemon.located(load_settings({}))) == f"https://127.0.0.1:{port}"


def test_the_record_keeps_the_key_the_daemon_was_started_with(run, tmp_path, free_port):
    """`start --daemon --api-key K`: status and claude must present K, which no config holds."""
    record = {"pid": os.getpid(), "host": "127.0.0.1", "port": free_port(), "api_key": "only-on-the-flag"}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "daemon.json").write_text(json.dumps(record))
    assert daemon.located(load_settings({})).api_key == "only-on-the-flag"
    del record["api_key"]  # a record written by an older pensieve: the configured key
    (tmp_path / "home" / "daemon.json").write_text(json.dumps(record))
    assert daemon.located(load_settings({})).api_key == load_settings({}).api_key
