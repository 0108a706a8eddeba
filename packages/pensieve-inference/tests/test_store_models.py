"""A model chosen from Ollama's store and LM Studio's folder answers like any GGUF file."""

import asyncio

from pensieve_claude_types import MessageParam
from pensieve_core import Finished, GenerationRequest, TextDelta
from pensieve_model_support import HuggingFaceHub, resolve_reference
from pensieve_model_support.gguf.testing import build_tiny_gguf
from pensieve_model_support.store_testing import write_lmstudio_model, write_ollama_model


async def greedy_text(engine):
    request = GenerationRequest(messages=[MessageParam(role="user", content="Hello")], max_tokens=4, temperature=0.0)
    events = [e async for e in engine.generate(request)]
    assert isinstance(events[-1], Finished) and events[-1].output_tokens == 4
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def answer(reference):
    from pensieve_inference import MLXEngine

    engine = MLXEngine.load_sync(resolve_reference(reference), HuggingFaceHub(), download=False)
    try:
        return engine.model.id, asyncio.run(greedy_text(engine))
    finally:
        engine._worker.stop()


def test_ollama_and_lmstudio_models_answer_as_the_gguf_file_does(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PENSIEVE_HOME", str(tmp_path / ".pensieve"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    gguf = build_tiny_gguf(tmp_path / "tiny.gguf", "Q8_0", hidden_size=64)
    write_ollama_model(tmp_path / ".ollama" / "models", "qwen3-coder", gguf, tag="30b")
    write_lmstudio_model(tmp_path / ".lmstudio" / "models", "lmstudio-community", "Tiny-GGUF", gguf)
    _, expected = answer(str(gguf))
    assert expected
    assert answer("ollama:qwen3-coder:30b") == ("qwen3-coder:30b", expected)
    assert answer("lmstudio:lmstudio-community/Tiny-GGUF") == ("lmstudio-community/Tiny-GGUF", expected)
