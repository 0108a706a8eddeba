"""`pensieve start` with no flags on a machine that cannot reach the hub: the bundled model
is served on 127.0.0.1:7777 and says so."""

import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from server_process import ServerProcess, isolated_env


@pytest.mark.slow
def test_offline_default_start_serves_the_bundled_model(tmp_path):
    # The installed `pensieve` console script, exactly as `uv run pensieve start` runs it.
    script = Path(sys.executable).parent / "pensieve"
    proc = ServerProcess([], isolated_env(tmp_path), 7777, tmp_path / "server.log", command=[str(script)])
    try:
        health = proc.wait_ready(timeout=180)
        assert health["model"]["id"] == "smollm2-135m"
        assert health["model"]["fallback_from"] == "phi-3-mini"
        assert "serving the bundled smollm2-135m" in proc.output()
        r = httpx.post(
            "http://127.0.0.1:7777/v1/messages",
            headers={"x-api-key": "pensieve-local-key"},
            json={"model": "anything", "max_tokens": 10, "temperature": 0,
                  "messages": [{"role": "user", "content": "What is the capital of France? Answer briefly."}]},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert "Paris" in r.json()["content"][0]["text"]
    finally:
        assert proc.stop() == 0, proc.output()
