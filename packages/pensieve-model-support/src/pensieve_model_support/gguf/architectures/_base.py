"""What the architecture modules share: llama.cpp's tensor names (gguf-py's `TENSOR_NAMES`), the
hyperparameters its converter writes for every model (`TextModel.set_gguf_parameters`), and its
rope scaling keys, read into mlx-lm's config names."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pensieve_core.errors import ModelLoadError

from ..reader import GGUFContents

_TENSOR = re.compile(r"^(?:blk\.(\d+)\.)?(\w+)\.(weight|scales|biases|bias)$")

# The llama layout, which the other families extend.
BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def rename(name: str, block: Mapping[str, str], top: Mapping[str, str] = TOP_NAMES) -> str | None:
    """`blk.N.<part>.<kind>` or `<part>.<kind>` → the mlx-lm parameter; None for a part not in the tables."""
    m = _TENSOR.match(name)
    if m is None:
        return None
    layer, part, kind = m.groups()
    if layer is None:
        return f"{top[part]}.{kind}" if part in top else None
    return f"model.layers.{layer}.{block[part]}.{kind}" if part in block else None


def base_config(gguf: GGUFContents, model_type: str) -> dict[str, Any]:
    heads = int(gguf.arch_field("attention.head_count"))
    hidden = int(gguf.arch_field("embedding_length"))
    embeddings = gguf.weights.get("token_embd.weight")
    vocab = embeddings.shape[0] if embeddings is not None else len(gguf.metadata["tokenizer.ggml.tokens"])
    return {
        "model_type": model_type,
        "hidden_size": hidden,
        "num_hidden_layers": int(gguf.arch_field("block_count")),
        "intermediate_size": int(gguf.arch_field("feed_forward_length", 0)),
        "num_attention_heads": heads,
        "num_key_value_heads": int(gguf.arch_field("attention.head_count_kv", heads)),
        "head_dim": int(gguf.arch_field("attention.key_length", hidden // heads)),
        "rms_norm_eps": float(gguf.arch_field("attention.layer_norm_rms_epsilon", 1e-6)),
        "vocab_size": int(vocab),
        "rope_theta": float(gguf.arch_field("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(gguf.arch_field("context_length", 4096)),
        "tie_word_embeddings": "output.weight" not in gguf.weights,
    }


def rope_scaling(gguf: GGUFContents) -> dict[str, Any] | None:
    """The converter's linear and YaRN keys as mlx-lm's `rope_scaling`; another kind is refused."""
    kind = gguf.arch_field("rope.scaling.type", "none")
    factor = gguf.arch_field("rope.scaling.factor")
    if kind == "none" or (kind == "linear" and factor in (None, 1.0)):
        return None
    if kind == "linear":
        return {"type": "linear", "factor": float(factor)}
    if kind == "yarn":
        scaling = {"type": "yarn", "factor": float(factor)}
        for key, field in (
            ("original_max_position_embeddings", "original_context_length"),
            ("beta_fast", "yarn_beta_fast"),
            ("beta_slow", "yarn_beta_slow"),
        ):
            if (value := gguf.arch_field(f"rope.scaling.{field}")) is not None:
                scaling[key] = value
        return scaling
    raise ModelLoadError(f"GGUF rope scaling {kind!r} is not read for the {gguf.architecture} architecture")
