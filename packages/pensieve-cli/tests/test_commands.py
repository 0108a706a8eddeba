import json
import shutil

import pytest

from pensieve_model_support.testing import build_tiny_model


def test_config_set_get_show_unset_path(run, tmp_path, monkeypatch):
    assert run("config", "path").output.strip() == str(tmp_path / "home" / "config.json")
    assert run("config", "set", "allowed_origins", "https://a.example, https://b.example").exit_code == 0
    assert run("config", "set", "port", "8080").exit_code == 0
    assert json.loads((tmp_path / "home" / "config.json").read_text())["port"] == 8080
    monkeypatch.delenv("PENSIEVE_PORT")  # the file's port shows only without the environment's
    assert run("config", "get", "port").output.strip() == "8080"
    shown = json.loads(run("config", "show").output)
    assert shown["port"] == 8080 and shown["allowed_origins"] == ["https://a.example", "https://b.example"]
    assert shown["api_key"] == "(default)"
    assert run("config", "unset", "port").exit_code == 0
    assert run("config", "get", "port").output.strip() == "7777"


@pytest.mark.parametrize(
    "args, message",
    [
        (("config", "set", "port", "high"), "invalid value for port"),
        (("config", "set", "colour", "red"), "unknown setting 'colour'"),
        (("config", "get", "colour"), "unknown setting"),
    ],
)
def test_config_errors_are_one_line(run, args, message):
    result = run(*args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_models_lists_the_bundled_model(run):
    result = run("models", "--json")
    assert result.exit_code == 0, result.output
    (bundled,) = [m for m in json.loads(result.output) if m["name"] == "smollm2-135m"]
    assert bundled["format"] == "gguf" and bundled["context_length"] == 8192
    assert bundled["quantization"] == "Q4_1" and bundled["size_bytes"] > 50_000_000
    table = run("models").output
    assert "smollm2-135m" in table and "Q4_1" in table


def test_models_lists_and_rm_deletes_a_cached_hub_model(run, tmp_path):
    # The standard Hugging Face cache layout, written by hand (no hub needed).
    snapshot = tmp_path / "hf" / "hub" / "models--someone--tiny" / "snapshots" / "abc"
    build_tiny_model(snapshot, context_length=2048)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    listed = {m["name"]: m for m in json.loads(run("models", "--json").output)}
    assert listed["someone/tiny"]["context_length"] == 2048 and listed["someone/tiny"]["format"] == "mlx"
    result = run("rm", "someone/tiny", "--yes")
    assert result.exit_code == 0, result.output
    assert "someone/tiny" not in {m["name"] for m in json.loads(run("models", "--json").output)}
    assert run("rm", "someone/tiny", "--yes").exit_code == 1


def test_rm_refuses_the_bundled_model(run):
    result = run("rm", "smollm2-135m", "--yes")
    assert result.exit_code == 1 and "only removes what it downloaded" in result.output


def test_pull_of_a_local_model_is_a_no_op_and_offline_hub_is_one_line(run, tmp_path):
    local = build_tiny_model(tmp_path / "local")
    assert "nothing to pull" in run("pull", str(local)).output
    result = run("pull", "someone/not-here")
    assert result.exit_code == 1 and "cannot download someone/not-here" in result.output
    assert "Traceback" not in result.output


def test_validate_passes_for_a_good_model_and_fails_clearly(run, tmp_path):
    good = build_tiny_model(tmp_path / "good")
    result = run("validate", "--model", str(good))
    assert result.exit_code == 0, result.output
    assert "chat template renders" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    bad = run("validate", "--model", str(empty))
    assert bad.exit_code == 1 and "no safetensors or GGUF weights" in bad.output
    missing = run("validate", "--model", "someone/never-downloaded")
    assert missing.exit_code == 1 and "not in the Hugging Face cache" in missing.output


def exports(output):
    return dict(
        line.removeprefix("export ").split("=", 1) for line in output.splitlines() if line.startswith("export ")
    )


def test_claude_print_env(run):
    result = run("claude", "--print-env", "--port", "1")
    assert result.exit_code == 0
    lines = exports(result.output)
    assert lines["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1"
    assert lines["ANTHROPIC_AUTH_TOKEN"] == "pensieve-local-key"
    assert lines["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    # No server answers on port 1: the window is left to Claude Code, and it says so.
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in lines and "no server answers at http://127.0.0.1:1" in result.output


def test_claude_env_sets_the_served_window_and_keeps_the_prompt_stable(run, stand_in):
    stand_in.answers["/v1/models?limit=1000"] = stand_in.listing(tiny=32768, other=40960)
    lines = exports(run("claude", "--print-env").output)
    assert "/v1/models?limit=1000" in stand_in.paths
    assert lines["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "32768"  # the smallest served window
    # Claude Code reads a compaction window under 100K as 100K: not set for a smaller model.
    assert "CLAUDE_CODE_AUTO_COMPACT_WINDOW" not in lines
    assert lines["CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY"] == "1"
    assert lines["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"
    assert lines["CLAUDE_CODE_TOTAL_TOKENS_REMINDER"] == "off"
    assert not {"ANTHROPIC_SMALL_FAST_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"} & set(lines)  # no tiers configured


def test_claude_env_points_tiers_subagents_and_small_model_where_configured(run, stand_in, monkeypatch):
    monkeypatch.setenv("PENSIEVE_SONNET_MODEL", "qwen3-8b")
    monkeypatch.setenv("PENSIEVE_HAIKU_MODEL", "qwen3-0.6b")
    lines = exports(run("claude", "--print-env").output)
    assert lines["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == lines["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == "131072"
    assert lines["ANTHROPIC_DEFAULT_SONNET_MODEL"] == lines["CLAUDE_CODE_SUBAGENT_MODEL"] == "qwen3-8b"
    assert lines["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == lines["ANTHROPIC_SMALL_FAST_MODEL"] == "qwen3-0.6b"
    assert "ANTHROPIC_DEFAULT_OPUS_MODEL" not in lines


def test_claude_without_claude_code_installed_is_one_line(run, stand_in, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = run("claude", "--", "-p", "hi")
    assert result.exit_code == 1 and "Claude Code is not installed" in result.output


def test_status_and_stop_when_not_running(run):
    result = run("status", "--json", "--port", "1")
    assert result.exit_code == 3 and json.loads(result.output)["running"] is False
    assert run("stop").output.strip() == "pensieve is not running"


def test_status_reads_the_counts_from_v1_status(run, stand_in):
    info = json.loads(run("status", "--json").output)
    assert info["running"] is True and info["model"] == "tiny"
    assert (info["requests"], info["in_flight"], info["tokens_per_s"], info["cache_hit_rate"]) == (7, 1, 41.5, 0.5)
    assert "tokens_per_s    41.5" in run("status").output


def test_status_lists_the_requests_running_with_a_long_prefill_s_share(run, stand_in):
    base = {"age_s": 4.2, "output_tokens": 0, "prefill_done": None, "prefill_percent": None}
    stand_in.answers["/v1/status"] = {
        **stand_in.answers["/v1/status"],
        "running": [
            {**base, "request_id": "req_a", "phase": "prefill", "prefill_done": 5244, "prefill_percent": 43.7},
            {**base, "request_id": "req_b", "phase": "prefill"},  # a short prompt reports no share
            {**base, "request_id": "req_c", "phase": "decoding", "output_tokens": 9},
        ],
    }
    shown = run("status").output
    assert "running         req_a prefill 43% (4.2 s)" in shown
    assert "running         req_b prefill (4.2 s)" in shown and "None" not in shown
    assert "running         req_c decoding, 9 tokens (4.2 s)" in shown
    listed = json.loads(run("status", "--json").output)["generations_running"]
    assert [(r["request_id"], r["prefill_percent"]) for r in listed] == [
        ("req_a", 43.7),
        ("req_b", None),
        ("req_c", None),
    ]


def test_status_without_the_key_still_says_what_health_says(run, stand_in, monkeypatch):
    monkeypatch.setenv("PENSIEVE_API_KEY", "another-key")
    result = run("status", "--json")
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["running"] is True and info["model"] == "tiny" and info["requests"] is None


def test_status_shows_a_degraded_model(run, stand_in):
    """What /health says of a model whose steps keep failing (the server's side is tested in
    pensieve-server's test_failures_and_names.py); here /health is read from a stand-in."""
    stand_in.answers["/health"] = {
        **stand_in.answers["/health"],
        "status": "degraded",
        "problem": "tiny: RuntimeError('device lost')",
    }
    result = run("status")
    assert result.exit_code == 0
    assert "status          degraded: tiny: RuntimeError('device lost')" in result.output
    assert json.loads(run("status", "--json").output)["status"] == "degraded"


def test_default_key_is_refused_on_a_public_address(run):
    result = run("start", "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "refusing to listen on 0.0.0.0 with the default API key" in result.output
