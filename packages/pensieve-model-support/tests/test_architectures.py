"""Each GGUF architecture pensieve reads, written as llama.cpp's converter writes it (its tensor
names, its layout changes, its metadata), answers as the mlx-lm model it came from."""

import itertools

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm import generate
from mlx_lm.generate import generate_step
from mlx_lm.models.switch_layers import QuantizedSwitchLinear

from pensieve_core.errors import ModelLoadError
from pensieve_model_support import HuggingFaceHub, load_model, model_classes, resolve_reference
from pensieve_model_support.gguf import GGUFContents, read_gguf
from pensieve_model_support.gguf.architectures import SUPPORTED
from pensieve_model_support.gguf.loader import build_model
from pensieve_model_support.gguf.testing import TINY_CONFIGS, stored_as, tiny_weights, write_like_llama_cpp

# Longer than Gemma 3's sliding window (4) in the tiny config.
PROMPT = [1, 504, 3458, 282, 4649, 314, 7042, 28, 284, 260, 3458, 282]

CASES = [
    ("llama", "F16"),  # q/k permuted for llama.cpp's rotary layout; Llama 3's rope_freqs
    ("llama", "Q8_0"),
    ("qwen2", "Q8_0"),  # q/k/v biases, tied embeddings
    ("qwen3", "F32"),  # per-head q/k norms, a head size of its own
    ("qwen3moe", "F16"),  # float experts: widened on the CPU
    ("qwen3moe", "Q8_0"),  # quantized 3-d experts, as mx.load reads them
    ("qwen3moe", "Q5_0"),  # quantized 3-d experts, through our conversion (2-d rows)
    ("phi3", "F32"),  # fused qkv and gate_up, LongRoPE factor tensors, partial rotary, tied
    ("phi3", "Q8_0"),
    ("gemma2", "F16"),  # norms stored +1, logit soft-capping
    ("gemma3", "F32"),  # norms +1, q/k norms, sliding windows, the global layers' linear rope scaling
    ("gemma3", "Q8_0"),
]


def _reference(config, stored):
    """The mlx-lm model of `config`, given the weights the file holds."""
    model_class, args_class = model_classes(config)
    model = model_class(args_class.from_dict(config))
    # As the loader does on the CPU, where gather_mm multiplies float32 only.
    weights = {k: mx.array(v).astype(mx.float32) if "switch_mlp" in k else mx.array(v) for k, v in stored.items()}
    model.load_weights(list(model.sanitize(weights).items() if hasattr(model, "sanitize") else weights.items()))
    model.eval()
    return model


def _written(tmp_path, architecture, tensor_type):
    config = TINY_CONFIGS[architecture]
    stored = stored_as(tiny_weights(config), tensor_type)
    path = write_like_llama_cpp(
        tmp_path / f"{architecture}-{tensor_type}.gguf", architecture, config, stored, tensor_type
    )
    return path, _reference(config, stored)


def _logits(model) -> np.ndarray:
    return np.array(model(mx.array([PROMPT]))[0].astype(mx.float32))


def _greedy(model, steps: int = 5) -> list[int]:
    return [int(token) for token, _ in itertools.islice(generate_step(mx.array(PROMPT), model), steps)]


@pytest.mark.parametrize(("architecture", "tensor_type"), CASES)
def test_a_gguf_written_as_llama_cpp_writes_it_answers_as_its_mlx_lm_model(tmp_path, architecture, tensor_type):
    path, reference = _written(tmp_path, architecture, tensor_type)
    loaded, config = build_model(read_gguf(path))
    assert config["model_type"] == TINY_CONFIGS[architecture]["model_type"]
    got, want = _logits(loaded), _logits(reference)
    if tensor_type in ("F32", "F16"):
        # The same weights and arithmetic; llama's permuted rotary pairs round a little differently.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:
        # Quantized matrices multiply in float16 here, the reference's dequantized ones in float32.
        assert np.sqrt(((got - want) ** 2).mean() / (want**2).mean()) < 1e-2
    assert _greedy(loaded) == _greedy(reference)


def test_float_experts_are_float32_on_the_cpu_and_quantized_ones_stay_quantized(tmp_path):
    """MLX's CPU gather_mm multiplies float32 only: a float16 expert would be widened on every call."""
    float16, _ = _written(tmp_path, "qwen3moe", "F16")
    layer = build_model(read_gguf(float16))[0].model.layers[0]
    widened = mx.float32 if mx.default_device() == mx.cpu else mx.float16
    assert layer.mlp.switch_mlp.gate_proj.weight.dtype == widened
    assert layer.self_attn.q_proj.weight.dtype == mx.float16

    quantized, _ = _written(tmp_path, "qwen3moe", "Q8_0")
    experts = build_model(read_gguf(quantized))[0].model.layers[1].mlp.switch_mlp
    assert isinstance(experts.down_proj, QuantizedSwitchLinear)
    assert (experts.down_proj.bits, experts.down_proj.group_size) == (8, 32)
    assert experts.down_proj.weight.shape == (4, 64, 32 * 8 // 32)


def test_a_gemma3_gguf_loads_and_generates_through_the_model_reference(tmp_path):
    path, _ = _written(tmp_path, "gemma3", "Q8_0")
    loaded = load_model(resolve_reference(str(path)), HuggingFaceHub())
    assert loaded.config["sliding_window"] == 4 and loaded.config["query_pre_attn_scalar"] == 16.0
    assert loaded.config["rope_scaling"] == {"type": "linear", "factor": 8.0}
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert isinstance(generate(loaded.model, loaded.tokenizer, prompt, max_tokens=3), str)


def test_the_llama3_rope_parameters_are_recovered_from_rope_freqs(tmp_path):
    path, _ = _written(tmp_path, "llama", "F16")
    assert build_model(read_gguf(path))[1]["rope_scaling"] == TINY_CONFIGS["llama"]["rope_scaling"]


def test_an_architecture_not_read_is_one_line_naming_it_the_supported_ones_and_an_mlx_build():
    gguf = GGUFContents(weights={}, metadata={"general.architecture": "mamba", "general.name": "Falcon Mamba 7B"})
    with pytest.raises(ModelLoadError) as caught:
        build_model(gguf)
    message = caught.value.message
    assert "\n" not in message
    assert "GGUF architecture 'mamba' is not supported" in message
    assert f"(supported: {', '.join(SUPPORTED)})" in message
    assert "--model mlx-community/Falcon-Mamba-7B-4bit" in message
