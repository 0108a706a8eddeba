"""Random-weight MLX model directories for benchmarks: speed does not depend on the values.

tiny       llama, hidden 128, 4 layers (the CPU runs: a 10K-token prefix prefills in seconds)
phi3-mini  Phi-3-mini-128k's shape (hidden 3072, 32 layers, 32 heads, MLP 8192), phi3 code
           in mlx-lm, 4-bit (group 64) or bf16; SmolLM2's tokenizer (vocab 49,152, not 32,064)
qwen3-8b   Qwen3-8B's shape (hidden 4096, 36 layers, 32 heads, 8 KV heads, MLP 12288), qwen3
           code, the same choices and tokenizer (vocab 49,152, not 151,936)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PHI3_MINI = {
    "model_type": "phi3",
    "hidden_size": 3072,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "intermediate_size": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
QWEN3_8B = {
    "model_type": "qwen3",
    "hidden_size": 4096,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 12288,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": False,
}
SHAPES = {"phi3-mini": PHI3_MINI, "qwen3-8b": QWEN3_8B}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def build(path: Path, shape: str, bits: int | None, tokenizer_from: Path | None = None) -> Path:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3, qwen3

    if tokenizer_from is not None:  # where the bundled GGUF is not at hand (the lent GPU)
        if not (tokenizer_from / "config.json").exists():  # the vocabulary size comes from it
            raise SystemExit(f"{tokenizer_from} has no config.json: copy it with the tokenizer files")
        path.mkdir(parents=True, exist_ok=True)
        for name in (*TOKENIZER_FILES, "config.json"):
            if (tokenizer_from / name).exists():
                (path / name).write_bytes((tokenizer_from / name).read_bytes())
    else:
        from pensieve_model_support.testing import build_tiny_model

        if shape == "tiny":
            return build_tiny_model(path, context_length=32768, hidden_size=128, num_layers=4)
        build_tiny_model(path)  # the tokenizer files; config and weights are replaced below
        (path / "model.safetensors").unlink()
    small = json.loads((path / "config.json").read_text())
    config = {**SHAPES[shape], "vocab_size": small["vocab_size"], "eos_token_id": small.get("eos_token_id")}
    mx.random.seed(0)
    family = qwen3 if shape == "qwen3-8b" else phi3
    model = family.Model(family.ModelArgs.from_dict(config))
    model.set_dtype(mx.bfloat16)
    if bits:
        nn.quantize(model, group_size=64, bits=bits)
        config["quantization"] = {"group_size": 64, "bits": bits}
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(path / "model.safetensors"), weights, {"format": "mlx"})
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--shape", choices=["tiny", *SHAPES], default="tiny")
    parser.add_argument("--bits", type=int, default=None, help="quantize (not tiny), e.g. 4")
    parser.add_argument("--tokenizer-from", type=Path, help="copy tokenizer files from this model directory")
    args = parser.parse_args()
    print(build(args.path, args.shape, args.bits, args.tokenizer_from))
