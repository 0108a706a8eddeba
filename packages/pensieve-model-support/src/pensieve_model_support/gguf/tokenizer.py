"""Build a Hugging Face fast tokenizer from GGUF metadata: no download, no torch."""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from pensieve_core.errors import ModelLoadError

CONTROL_TOKEN = 3
USER_DEFINED_TOKEN = 4


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        # SmolLM2's tokenizer.json splits digits one by one before the byte-level step.
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    return byte_level


def _token(metadata: dict[str, Any], tokens: list[str], key: str) -> str | None:
    index = metadata.get(f"tokenizer.ggml.{key}_token_id")
    return tokens[index] if index is not None and 0 <= index < len(tokens) else None


def build_tokenizer(metadata: dict[str, Any]) -> PreTrainedTokenizerFast:
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelLoadError(f"GGUF tokenizer type {kind!r} is not supported yet (supported: 'gpt2' byte-level BPE)")
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = _pre_tokenizer(str(metadata.get("tokenizer.ggml.pre", "gpt2")))
    backend.decoder = decoders.ByteLevel()
    types = metadata.get("tokenizer.ggml.token_type") or []
    specials = [
        AddedToken(tokens[i], special=True, normalized=False)
        for i, t in enumerate(types)
        if t in (CONTROL_TOKEN, USER_DEFINED_TOKEN)
    ]
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=_token(metadata, tokens, "bos"),
        eos_token=_token(metadata, tokens, "eos"),
        unk_token=_token(metadata, tokens, "unknown"),
        pad_token=_token(metadata, tokens, "padding"),
        chat_template=metadata.get("tokenizer.chat_template"),
        clean_up_tokenization_spaces=False,
    )
