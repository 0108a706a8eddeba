"""Build a Hugging Face fast tokenizer from GGUF metadata: no download, no torch.

Two vocabulary kinds, named by `tokenizer.ggml.model` as llama.cpp reads them:
- `gpt2`: byte-level BPE from tokens and merges, split first by the rules `tokenizer.ggml.pre`
  names (see `pretokenizers`).
- `llama`: SentencePiece pieces with scores and token types (byte pieces `<0x0A>`, `▁` for a
  space), rebuilt as transformers' LlamaConverter does: a BPE with byte fallback whose merges
  rank pieces by score. Its legacy normalizer puts `▁` before every run of text, after special
  tokens too, as SentencePiece and llama.cpp do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, SPMStreamingDetokenizer, StreamingDetokenizer
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from pensieve_core.errors import ModelLoadError

from .pretokenizers import bpe_rules

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "▁"
# llama.cpp's special ids for a SentencePiece vocabulary whose file names none.
SPM_DEFAULT_IDS = {"bos": 1, "eos": 2, "unknown": 0}


def _token_id(metadata: dict[str, Any], key: str) -> int | None:
    index = metadata.get(f"tokenizer.ggml.{key}_token_id")
    if index is None and metadata.get("tokenizer.ggml.model") == "llama":
        index = SPM_DEFAULT_IDS.get(key)
    return None if index is None or not 0 <= index < len(metadata["tokenizer.ggml.tokens"]) else int(index)


def _token(metadata: dict[str, Any], key: str) -> str | None:
    index = _token_id(metadata, key)
    return None if index is None else str(metadata["tokenizer.ggml.tokens"][index])


def _byte_level_bpe(metadata: dict[str, Any], tokens: list[str]) -> tuple[Tokenizer, bool]:
    rules = bpe_rules(str(metadata.get("tokenizer.ggml.pre", "")))
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=rules.ignore_merges))
    if rules.normalizer is not None:
        backend.normalizer = rules.normalizer
    backend.pre_tokenizer = rules.pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    return backend, rules.add_bos


def _spm_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """Every split of a normal piece into two normal pieces, best-scored result first (as
    transformers' SpmConverter ranks them): SentencePiece merges the best-scored pair first."""
    normal = {tok: (scores[i], i) for i, tok in enumerate(tokens) if types[i] == NORMAL}
    ranked = []
    for tok, (score, index) in normal.items():
        for cut in range(1, len(tok)):
            left, right = tok[:cut], tok[cut:]
            if left in normal and right in normal:
                ranked.append((-score, index, left, right))
    ranked.sort()
    return [(left, right) for _, _, left, right in ranked]


def _sentencepiece(metadata: dict[str, Any], tokens: list[str], types: list[int]) -> Tokenizer:
    scores = metadata.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    # The converter writes a user-defined piece's `▁` as a space; SentencePiece matches it normalized.
    pieces = [tok.replace(" ", SPACE) if t == USER_DEFINED else tok for tok, t in zip(tokens, types, strict=True)]
    user_defined = [tok for tok, t in zip(pieces, types, strict=True) if t == USER_DEFINED]
    backend = Tokenizer(
        models.BPE(
            vocab={tok: i for i, tok in enumerate(pieces)},
            merges=_spm_merges(pieces, scores, types),
            unk_token=_token(metadata, "unknown"),
            fuse_unk=True,
            byte_fallback=True,
            ignore_merges=bool(user_defined),
        )
    )
    prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
    steps: list[normalizers.Normalizer] = [normalizers.Prepend(SPACE)] if prefix else []
    backend.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", SPACE)])
    if user_defined:
        # SentencePiece emits user-defined pieces whole, found after the space prefix (as transformers does).
        pattern = "|".join(re.escape(tok) for tok in sorted(user_defined, key=len, reverse=True))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tail: list[decoders.Decoder] = [decoders.Strip(content=" ", left=1)] if prefix else []
    backend.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), *tail])
    return backend


def _post_processor(metadata: dict[str, Any], add_bos: bool) -> processors.TemplateProcessing | None:
    bos, eos = (_token(metadata, "bos"), _token(metadata, "eos"))
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", add_bos)) and bos is not None
    add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    if not (add_bos or add_eos):
        return None
    head, tail = ([bos] if add_bos else []), ([eos] if add_eos else [])
    specials = [(tok, _token_id(metadata, key)) for tok, key in ((bos, "bos"), (eos, "eos")) if tok in head + tail]
    return processors.TemplateProcessing(
        single=[*head, "$A", *tail], pair=[*head, "$A", *tail, *head, "$B:1", *tail], special_tokens=specials
    )


def build_tokenizer(metadata: dict[str, Any]) -> PreTrainedTokenizerFast:
    kind = metadata.get("tokenizer.ggml.model")
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    types: list[int] = metadata.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    if kind == "gpt2":
        backend, add_bos = _byte_level_bpe(metadata, tokens)
    elif kind == "llama":
        backend, add_bos = _sentencepiece(metadata, tokens, types), True
    else:
        supported = "'gpt2' byte-level BPE, 'llama' SentencePiece"
        raise ModelLoadError(f"GGUF tokenizer type {kind!r} is not supported yet (supported: {supported})")
    # Control tokens are special (dropped when decoding without them); user-defined ones are text,
    # which a SentencePiece vocabulary already splits off.
    added = (CONTROL, USER_DEFINED) if kind == "gpt2" else (CONTROL,)
    backend.add_tokens(
        [AddedToken(tokens[i], special=t == CONTROL, normalized=False) for i, t in enumerate(types) if t in added]
    )
    backend.post_processor = _post_processor(metadata, add_bos)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=_token(metadata, "bos"),
        eos_token=_token(metadata, "eos"),
        unk_token=_token(metadata, "unknown"),
        pad_token=_token(metadata, "padding"),
        chat_template=metadata.get("tokenizer.chat_template"),
        clean_up_tokenization_spaces=False,
    )


def eos_token_ids(metadata: dict[str, Any]) -> list[int]:
    """The ids that end generation: EOS, and the end-of-turn and end-of-message ids the file names."""
    ids = (_token_id(metadata, key) for key in ("eos", "eot", "eom"))
    return list(dict.fromkeys(i for i in ids if i is not None))


def detokenizer_class(metadata: dict[str, Any]) -> Callable[[Any], StreamingDetokenizer]:
    """mlx-lm's streaming detokenizer for this vocabulary kind."""
    if metadata.get("tokenizer.ggml.model") == "llama":
        return partial(SPMStreamingDetokenizer, trim_space=bool(metadata.get("tokenizer.ggml.add_space_prefix", True)))
    return BPEStreamingDetokenizer
