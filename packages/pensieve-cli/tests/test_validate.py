"""`pensieve validate` on a fresh machine that cannot reach the hub: the default model is not
there, and `start` would serve the bundled fallback; a model the user named must be there."""

import pytest


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """validate's hub is the test double, unreachable: a fresh machine with no network."""
    import pensieve_model_support
    from pensieve_model_support.testing import FakeHub

    hub = FakeHub(tmp_path / "hub-cache", reachable=False)
    monkeypatch.setattr(pensieve_model_support, "HuggingFaceHub", lambda: hub)
    return hub


def test_validate_offline_with_the_default_model_missing_checks_the_fallback_start_serves(run, offline_hub):
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert "the default model phi-3-mini is not downloaded" in result.output
    assert "`pensieve pull phi-3-mini`" in result.output and "serves the bundled smollm2-135m" in result.output
    assert "ok   model files: smollm2-135m" in result.output and "chat template renders" in result.output
    assert offline_hub.downloads == []  # validate only looks


def test_validate_of_a_named_model_that_is_missing_fails_naming_the_pull_and_the_fallback(run, offline_hub):
    result = run("validate", "--model", "someone/never-downloaded")
    assert result.exit_code == 1
    assert "someone/never-downloaded is not in the Hugging Face cache" in result.output
    assert "`pensieve pull someone/never-downloaded`" in result.output
    assert "serves the bundled smollm2-135m" in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("pensieve: someone/never-downloaded is not in")


def _on(kind, monkeypatch):
    """device_info as on another machine: the same numbers, another device kind."""
    import msgspec

    import pensieve_metal

    real = pensieve_metal.device_info
    monkeypatch.setattr(pensieve_metal, "device_info", lambda: msgspec.structs.replace(real(), kind=kind))


def test_validate_suggests_bf16_for_quantized_weights_on_cuda_only(run, tmp_path, monkeypatch):
    from pensieve_model_support.gguf.testing import build_tiny_gguf
    from pensieve_model_support.testing import build_tiny_model

    quantized, full = build_tiny_gguf(tmp_path / "q8.gguf"), build_tiny_model(tmp_path / "bf16")
    _on("cuda", monkeypatch)
    said = run("validate", "--model", str(quantized))
    assert said.exit_code == 0, said.output
    assert "note quantized weights on CUDA" in said.output and "a bf16 build of this model" in said.output
    assert "note quantized" not in run("validate", "--model", str(full)).output
    _on("cpu", monkeypatch)
    assert "note quantized" not in run("validate", "--model", str(quantized)).output


def test_validate_says_how_long_a_context_fits_at_each_kv_bits(run, tmp_path, monkeypatch):
    from pensieve_metal import memory_after_weights
    from pensieve_model_support.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny", hidden_size=128)
    monkeypatch.setenv("PENSIEVE_KV_BITS", "8")
    said = run("validate", "--model", str(model))
    assert said.exit_code == 0, said.output
    assert "KV cache (2 layers x 2 KV heads x 32)" in said.output
    rows = {line.split()[1]: line for line in said.output.splitlines() if line.strip().startswith("kv_bits")}
    assert list(rows) == ["none", "8", "4"] and rows["8"].endswith("<- configured")
    # float32: 2 layers x 2 heads x 32 x (K, V) x 4 bytes; quantized, bits/8 and a float32 scale and bias per 32.
    free = memory_after_weights(sum(f.stat().st_size for f in model.glob("*.safetensors")))
    for bits, per_token in (("none", 1024), ("8", 256 * (1 + 8 / 32)), ("4", 256 * (0.5 + 8 / 32))):
        assert f"{per_token / 1024:.1f} KB a token" in rows[bits]
        assert f"{int(free // per_token):,} tokens" in rows[bits]
