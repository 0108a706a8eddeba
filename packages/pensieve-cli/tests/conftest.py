import pytest


@pytest.fixture(autouse=True)
def _no_real_model_stores(tmp_path, monkeypatch):
    # `pensieve models` reads Ollama's store and LM Studio's folder under the home: never the real ones.
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
