"""Tiny GGUF files for tests, written with the gguf package.

`build_tiny_gguf`: a complete llama with the bundled tokenizer, its block's matrices stored in the
tensor type under test. Types the gguf package cannot quantize (K-quants, IQ) get random blocks
with sane float16 scales (`random_blocks`): valid to decode, meaningless to run.

`write_like_llama_cpp`: an mlx-lm model of any architecture pensieve reads (`TINY_CONFIGS`), written
as llama.cpp's convert_hf_to_gguf.py writes that architecture: its tensor names (gguf-py's own
`TensorNameMap`), its layout changes (llama's q/k permutation, Gemma's norms +1, Llama 3's
`rope_freqs`, Phi-3's LongRoPE factor tensors) and its metadata keys."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gguf import (
    GGML_QUANT_SIZES,
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFWriter,
    RopeScalingType,
    get_tensor_name_map,
    quants,
)

# Byte offsets of each block's float16 scale fields (d, dmin or m), as gguf.quants splits them.
_F16_FIELDS = {
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "Q8_0": (0,),
    "IQ4_NL": (0,),
    "IQ4_XS": (0,),
}
_BLOCK_MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def build_tiny_gguf(
    path: Path, tensor_type: str | Sequence[str] = "Q8_0", *, layers: int = 1, hidden_size: int = 256, seed: int = 0
) -> Path:
    """4 heads; `hidden_size` a multiple of 256 so that K-quant rows fit. Several tensor types
    are given to the block matrices in turn (as a Q4_K_M file mixes Q4_K and Q6_K)."""
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(2048)
    w.add_embedding_length(hidden_size)
    w.add_feed_forward_length(hidden_size)
    w.add_block_count(layers)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    meta = _add_tokenizer(w)

    rng = np.random.default_rng(seed)

    def add(name: str, shape: tuple[int, ...], kind: str) -> None:
        data = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if kind == "F32":
            w.add_tensor(name, data)
        elif kind == "F16":
            w.add_tensor(name, data.astype(np.float16))
        else:
            qtype = GGMLQuantizationType[kind]
            w.add_tensor(name, _quantized(rng, data, qtype), raw_dtype=qtype)

    add("token_embd.weight", (len(meta["tokenizer.ggml.tokens"]), hidden_size), "Q8_0")
    add("output_norm.weight", (hidden_size,), "F32")
    kinds = itertools.cycle([tensor_type] if isinstance(tensor_type, str) else tensor_type)
    for layer in range(layers):
        add(f"blk.{layer}.attn_norm.weight", (hidden_size,), "F32")
        add(f"blk.{layer}.ffn_norm.weight", (hidden_size,), "F32")
        for part in _BLOCK_MATRICES:
            add(f"blk.{layer}.{part}.weight", (hidden_size, hidden_size), next(kinds))
    _write(w)
    return path


def _add_tokenizer(w: GGUFWriter) -> dict[str, Any]:
    """The bundled SmolLM2 tokenizer (byte-level BPE, 49,152 tokens, ChatML template)."""
    from ..testing import _bundled_tokenizer_metadata

    meta = _bundled_tokenizer_metadata()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    w.add_token_list(meta["tokenizer.ggml.tokens"])
    w.add_token_merges(meta["tokenizer.ggml.merges"])
    w.add_token_types(meta["tokenizer.ggml.token_type"])
    w.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    w.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
    w.add_chat_template(meta["tokenizer.chat_template"])
    return meta


def _write(w: GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def random_blocks(rng: np.random.Generator, kind: str, rows: int, cols: int, std: float = 0.05) -> np.ndarray:
    """Raw `kind` tensor data (rows × bytes): random codes and sub-block scales, float16 scales
    chosen so the weights' standard deviation is about `std` (random bytes there give NaN).
    Types we do not read get plain random bytes: only their header is looked at."""
    qtype = GGMLQuantizationType[kind]
    block, size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (rows * cols // block, size), dtype=np.uint8)
    if kind not in _F16_FIELDS:
        return blocks.reshape(rows, cols // block * size)
    spread = rng.uniform(0.5, 1.5, (len(blocks), len(_F16_FIELDS[kind])))

    def set_scales(factor: float) -> None:
        for i, at in enumerate(_F16_FIELDS[kind]):
            blocks[:, at : at + 2] = (spread[:, i] * factor).astype(np.float16).view(np.uint8).reshape(-1, 2)

    # The weights are linear in the float16 fields: measure at 1e-3, then scale to `std`.
    set_scales(1e-3)
    set_scales(1e-3 * std / float(quants.dequantize(blocks[:64], qtype).std()))
    return blocks.reshape(rows, cols // block * size)


def _quantized(rng: np.random.Generator, data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    try:
        return quants.quantize(data, qtype)
    except NotImplementedError:
        return random_blocks(rng, qtype.name, data.shape[0], data.shape[1])


_COMMON: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6,
    "vocab_size": 49152,  # the bundled tokenizer's
    "max_position_embeddings": 4096,
}
# Tiny mlx-lm configs (Hugging Face names) for each GGUF architecture, with what sets each family apart.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    # Llama 3.1's rope scaling, its original context short enough for two frequencies to fall between.
    "llama": {
        **_COMMON,
        "model_type": "llama",
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 2048,
        },
    },
    "qwen2": {**_COMMON, "model_type": "qwen2", "rope_theta": 1e6, "tie_word_embeddings": True},
    "qwen3": {**_COMMON, "model_type": "qwen3", "head_dim": 32, "rope_theta": 1e6, "tie_word_embeddings": False},
    "qwen3moe": {
        **_COMMON,
        "model_type": "qwen3_moe",
        "head_dim": 16,
        "rope_theta": 1e6,
        "tie_word_embeddings": False,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
    },
    # Phi-4-mini's shape: tied embeddings, three quarters of each head rotated, LongRoPE.
    "phi3": {
        **_COMMON,
        "model_type": "phi3",
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "partial_rotary_factor": 0.75,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_scaling": {
            "type": "longrope",
            "long_factor": [1.0, 1.25, 1.5, 2.5, 4.0, 6.0],
            "short_factor": [1.0, 1.0, 1.05, 1.1, 1.2, 1.3],
        },
    },
    "gemma2": {
        **_COMMON,
        "model_type": "gemma2",
        "head_dim": 16,
        "rope_theta": 10000.0,
        "query_pre_attn_scalar": 16.0,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "sliding_window": 4096,
    },
    # Five sliding-window layers (window 4) and a global one, the global one's rope scaled as the 4B-27B's.
    "gemma3": {
        **_COMMON,
        "model_type": "gemma3_text",
        "num_hidden_layers": 6,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "rope_theta": 1e6,
        "rope_local_base_freq": 10000.0,
        "query_pre_attn_scalar": 16.0,
        "sliding_window": 4,
        "sliding_window_pattern": 6,
        "rope_scaling": {"type": "linear", "factor": 8.0},
    },
}


def tiny_weights(config: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights for the mlx-lm model of `config`, by mlx-lm's names: its own init
    times 4 (peaked logits, so greedy output depends on the prompt), norms random around their
    neutral value (1, or 0 for Gemma's 1 + weight). Gemma multiplies its embeddings by √hidden:
    that is divided out, or they would drown the blocks' outputs. A tied model has no `lm_head`."""
    import mlx.core as mx

    from ..mlx_lm_internals import model_classes
    from ..testing import _parameters

    mx.random.seed(seed)
    rng = np.random.default_rng(seed)
    model_class, args_class = model_classes(config)
    model = model_class(args_class.from_dict(config))
    gemma = config["model_type"].startswith("gemma")
    weights: dict[str, np.ndarray] = {}
    for name, value in _parameters(model):
        if name.startswith("lm_head.") and config.get("tie_word_embeddings", True):
            continue
        if name.endswith("norm.weight"):
            weights[name] = ((0.0 if gemma else 1.0) + rng.uniform(-0.4, 0.4, value.shape)).astype(np.float32)
        else:
            scale = 4 / math.sqrt(config["hidden_size"]) if gemma and name.endswith("embed_tokens.weight") else 4
            weights[name] = np.array(value.astype(mx.float32)) * scale
    return weights


def _kept_float32(name: str, value: np.ndarray) -> bool:
    # The converter keeps vectors (norms, biases) and the MoE router in float32; llama-quantize too.
    return value.ndim == 1 or name.endswith("mlp.gate.weight")


def stored_as(weights: dict[str, np.ndarray], tensor_type: str) -> dict[str, np.ndarray]:
    """The weights as a file of `tensor_type` holds them (float16 ones as float16 arrays, quantized
    ones decoded to float32): what the model loaded from `write_like_llama_cpp`'s file computes with."""
    stored = {}
    for name, value in weights.items():
        if tensor_type == "F32" or _kept_float32(name, value):
            stored[name] = value
        elif tensor_type == "F16":
            stored[name] = value.astype(np.float16)
        else:
            qtype = GGMLQuantizationType[tensor_type]
            stored[name] = quants.dequantize(quants.quantize(value.astype(np.float32), qtype), qtype)
    return stored


def write_like_llama_cpp(
    path: Path, architecture: str, config: dict[str, Any], weights: dict[str, np.ndarray], tensor_type: str = "F32"
) -> Path:
    """Matrices in `tensor_type` (F32, F16 or a type gguf.quants writes, embeddings included as
    llama-quantize does), the rest float32. Give it `stored_as(weights, tensor_type)`: rounding
    again to the same type changes nothing, so the file holds exactly the reference's weights."""
    arch = next(a for a, n in MODEL_ARCH_NAMES.items() if n == architecture)
    names = get_tensor_name_map(arch, config["num_hidden_layers"])
    w = GGUFWriter(str(path), architecture)
    _add_hparams(w, architecture, config)
    _add_tokenizer(w)
    for name, value in weights.items():
        base, kind = name.rsplit(".", 1)
        target = names.get_name(base.replace(".switch_mlp.", ".experts."))  # mlx-lm stacks them as llama.cpp does
        if target is None:
            raise ValueError(f"llama.cpp has no {architecture} tensor for {name}")
        data = _converter_layout(architecture, config, name, value)
        _add_tensor(w, f"{target}.{kind}", data, "F32" if _kept_float32(name, data) else tensor_type)
    for name, data in _extra_tensors(architecture, config).items():
        _add_tensor(w, name, data, "F32")
    _write(w)
    return path


def _add_tensor(w: GGUFWriter, name: str, data: np.ndarray, kind: str) -> None:
    if kind in ("F32", "F16"):
        w.add_tensor(name, data.astype(np.float32 if kind == "F32" else np.float16))
    else:
        qtype = GGMLQuantizationType[kind]
        w.add_tensor(name, quants.quantize(data.astype(np.float32), qtype), raw_dtype=qtype)


def _converter_layout(architecture: str, config: dict[str, Any], name: str, value: np.ndarray) -> np.ndarray:
    """LlamaModel.permute (q by heads, k by key-value heads); Gemma's `norm.weight + 1`."""
    if architecture == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = config["num_attention_heads" if "q_proj" in name else "num_key_value_heads"]
        return (
            value.reshape(heads, 2, value.shape[0] // heads // 2, *value.shape[1:]).swapaxes(1, 2).reshape(value.shape)
        )
    if architecture.startswith("gemma") and name.endswith("norm.weight"):
        return value + 1
    return value


def _extra_tensors(architecture: str, config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Llama 3's `rope_freqs` (LlamaModel.generate_extra_tensors) and Phi-3's LongRoPE factors."""
    scaling = config.get("rope_scaling") or {}
    if architecture == "llama" and scaling.get("rope_type") == "llama3":
        dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        divisors = []
        for freq in 1.0 / (config["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float32) / dim)):
            wavelen = 2 * math.pi / freq
            if wavelen < old / high:
                divisors.append(1.0)
            elif wavelen > old / low:
                divisors.append(factor)
            else:
                smooth = (old / wavelen - low) / (high - low)
                divisors.append(1 / ((1 - smooth) / factor + smooth))
        return {"rope_freqs.weight": np.array(divisors, np.float32)}
    if architecture == "phi3" and scaling.get("type") == "longrope":
        return {
            "rope_factors_long.weight": np.array(scaling["long_factor"], np.float32),
            "rope_factors_short.weight": np.array(scaling["short_factor"], np.float32),
        }
    return {}


def _add_hparams(w: GGUFWriter, architecture: str, c: dict[str, Any]) -> None:
    """The keys `TextModel.set_gguf_parameters` and each architecture's own converter class write."""
    heads, hidden = c["num_attention_heads"], c["hidden_size"]
    w.add_block_count(c["num_hidden_layers"])
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    if architecture != "gemma2":  # Gemma2Model writes no rope base (llama.cpp's default is 10,000)
        w.add_rope_freq_base(c["rope_theta"])
    if "head_dim" in c:
        w.add_key_length(c["head_dim"])
        w.add_value_length(c["head_dim"])
    scaling = c.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) == "linear":
        w.add_rope_scaling_type(RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(scaling["factor"])
    if architecture == "llama":
        w.add_vocab_size(c["vocab_size"])
        w.add_rope_dimension_count(c.get("head_dim") or hidden // heads)
    elif architecture == "qwen3moe":
        w.add_expert_count(c["num_experts"])
        w.add_expert_used_count(c["num_experts_per_tok"])
        w.add_expert_feed_forward_length(c["moe_intermediate_size"])
    elif architecture == "phi3":
        w.add_rope_dimension_count(int(c["partial_rotary_factor"] * hidden) // heads)
        w.add_rope_scaling_orig_ctx_len(c["original_max_position_embeddings"])
        w.add_sliding_window(0)
        if scaling.get("type") == "longrope":
            scale = c["max_position_embeddings"] / c["original_max_position_embeddings"]
            w.add_rope_scaling_attn_factors(
                math.sqrt(1 + math.log(scale) / math.log(c["original_max_position_embeddings"]))
            )
    elif architecture == "gemma2":
        w.add_attn_logit_softcapping(c["attn_logit_softcapping"])
        w.add_final_logit_softcapping(c["final_logit_softcapping"])
        w.add_sliding_window(c["sliding_window"])
    elif architecture == "gemma3":
        w.add_sliding_window(c["sliding_window"])
