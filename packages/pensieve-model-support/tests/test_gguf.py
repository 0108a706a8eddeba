import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx_lm import generate

from pensieve_core.errors import ModelLoadError
from pensieve_model_support import HuggingFaceHub, bundled_gguf_path, load_model, resolve_reference
from pensieve_model_support.gguf import read_gguf
from pensieve_model_support.gguf.architectures import architecture_module


@pytest.fixture(scope="module")
def bundled():
    return load_model(resolve_reference("smollm2-135m"), HuggingFaceHub())


def test_bundled_config_comes_from_gguf_metadata(bundled):
    cfg = bundled.config
    assert cfg["model_type"] == "llama"
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (576, 30, 9)
    assert cfg["num_key_value_heads"] == 3
    assert cfg["rope_traditional"] is True
    assert cfg["tie_word_embeddings"] is True
    assert bundled.context_length == 8192


def test_q4_1_tensors_stay_quantized_with_their_own_bits(bundled):
    layer = bundled.model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, nn.QuantizedLinear)
    assert (layer.bits, layer.group_size) == (4, 32)
    embed = bundled.model.model.embed_tokens
    assert isinstance(embed, nn.QuantizedEmbedding) and embed.bits == 8
    assert layer.weight.dtype == mx.uint32


def test_tokenizer_and_chat_template_come_from_gguf(bundled):
    tok = bundled.tokenizer
    ids = tok.encode("Hello world", add_special_tokens=False)
    assert tok.decode(ids) == "Hello world"
    assert tok.encode("<|im_end|>", add_special_tokens=False) == [2]
    assert 2 in tok.eos_token_ids
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow
def test_bundled_model_answers_correctly(bundled):
    prompt = bundled.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France? Answer briefly."}], add_generation_prompt=True
    )
    assert "Paris" in generate(bundled.model, bundled.tokenizer, prompt, max_tokens=10)


def test_unsupported_architecture_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="'mamba' is not supported"):
        architecture_module("mamba")


def test_gguf_reader_returns_plain_metadata():
    meta = read_gguf(bundled_gguf_path()).metadata
    assert meta["general.architecture"] == "llama"
    assert isinstance(meta["llama.block_count"], int)
    assert isinstance(meta["tokenizer.ggml.token_type"], list)


def test_corrupt_gguf_is_a_load_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError):
        load_model(resolve_reference(str(bad)), HuggingFaceHub())


@pytest.mark.parametrize("kind", ["IQ2_XXS", "IQ3_S", "IQ1_M", "TQ1_0"])
def test_a_gguf_with_unverified_tensor_types_is_refused_naming_them(tmp_path, kind):
    """MLX would dequantize these itself, unchecked: refused at load, never served."""
    from pensieve_model_support.gguf.testing import build_tiny_gguf

    path = build_tiny_gguf(tmp_path / f"tiny-{kind}.gguf", kind)
    with pytest.raises(ModelLoadError) as caught:
        load_model(resolve_reference(str(path)), HuggingFaceHub())
    message = caught.value.message
    assert f"holds {kind} tensors" in message and "\n" not in message
    assert "supported GGUF tensor types: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K" in message
    assert "--model mlx-community/" in message


@pytest.mark.parametrize("kind", ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0"])
def test_a_gguf_of_supported_tensor_types_loads(tmp_path, kind):
    from pensieve_model_support.gguf.testing import build_tiny_gguf

    path = build_tiny_gguf(tmp_path / f"tiny-{kind}.gguf", kind)
    loaded = load_model(resolve_reference(str(path)), HuggingFaceHub())
    assert loaded.config["hidden_size"] == 256


def test_tensor_types_read_from_the_header_agree_with_the_gguf_package(tmp_path):
    from gguf import GGUFReader

    from pensieve_model_support.gguf import tensor_types
    from pensieve_model_support.gguf.testing import build_tiny_gguf

    for path in (bundled_gguf_path(), build_tiny_gguf(tmp_path / "k.gguf", "Q4_K")):
        assert tensor_types(path) == {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


@pytest.mark.parametrize("cut", [0, 3, 24, 1000])
def test_a_cut_gguf_header_is_a_load_error(tmp_path, cut):
    from pensieve_model_support.gguf import tensor_types

    bad = tmp_path / "cut.gguf"
    with bundled_gguf_path().open("rb") as f:
        bad.write_bytes(f.read(cut))
    with pytest.raises(ModelLoadError, match="cannot read GGUF file"):
        tensor_types(bad)
