"""How a byte-level BPE vocabulary splits text before merging, by its `tokenizer.ggml.pre` name.

llama.cpp's converter names the split rules of the original tokenizer.json (convert_hf_to_gguf.py
`get_vocab_base_pre` hashes a probe text's ids); llama.cpp keeps a regex list per name
(src/llama-vocab.cpp, `LLAMA_VOCAB_PRE_TYPE_*`). Each entry here rebuilds that tokenizer.json's
own normalizer and pre-tokenizer chain, so ids match the Hugging Face tokenizer the model was
trained with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenizers import Regex, normalizers, pre_tokenizers

from pensieve_core.errors import ModelLoadError

# GPT-2's split, inside ByteLevel(use_regex=True).
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# meta-llama/Meta-Llama-3-8B: digits in runs of up to three, newlines kept with the whitespace before them.
LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# Qwen/Qwen1.5-7B (and Qwen2, 2.5, 3): Llama 3's with single digits.
QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# Xenova/gpt-4o (tiktoken's o200k): a word is an optional capitalised head and a lower-case tail.
GPT4O = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEEPSEEK_CJK = "[一-龥ࠀ-一가-퟿]+"
# deepseek-ai/deepseek-llm-7b-base: Latin, Greek, Cyrillic … letters spelled out as ranges.
DEEPSEEK_LLM_LETTERS = (
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷ"
    "ᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-"
    "ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻"
    "𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
)
DEEPSEEK_LLM_PUNCT = r"\s?[!-/:-~！-／：-～‘-‟　-。]+"


@dataclass(frozen=True)
class BpeRules:
    """What a byte-level BPE tokenizer does before and around its merges."""

    pre_tokenizer: pre_tokenizers.PreTokenizer
    normalizer: normalizers.Normalizer | None = None
    # Llama 3 looks a whole pre-token up in the vocabulary before merging (tokenizer.json `ignore_merges`).
    ignore_merges: bool = False
    # llama.cpp's default for `tokenizer.ggml.add_bos_token` when the file does not say.
    add_bos: bool = False


def _split(*patterns: str) -> list[pre_tokenizers.PreTokenizer]:
    return [pre_tokenizers.Split(Regex(p), behavior="isolated") for p in patterns]


def _bytes() -> pre_tokenizers.ByteLevel:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def _gpt2() -> BpeRules:
    return BpeRules(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))


def _smollm() -> BpeRules:
    # HuggingFaceTB/SmolLM-135M and bigcode/starcoder2-3b: single digits, then GPT-2's split.
    digits = pre_tokenizers.Digits(individual_digits=True)
    return BpeRules(pre_tokenizers.Sequence([digits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]))


def _llama3() -> BpeRules:
    return BpeRules(pre_tokenizers.Sequence([*_split(LLAMA3), _bytes()]), ignore_merges=True, add_bos=True)


def _qwen2() -> BpeRules:
    return BpeRules(pre_tokenizers.Sequence([*_split(QWEN2), _bytes()]), normalizer=normalizers.NFC())


def _gpt4o() -> BpeRules:
    return BpeRules(pre_tokenizers.Sequence([*_split(GPT4O), _bytes()]))


def _deepseek_llm() -> BpeRules:
    splits = _split("[\r\n]", DEEPSEEK_LLM_LETTERS, DEEPSEEK_LLM_PUNCT, r"\s+$", DEEPSEEK_CJK)
    digits = pre_tokenizers.Digits(individual_digits=False)
    return BpeRules(pre_tokenizers.Sequence([*splits, digits, _bytes()]))


def _deepseek_coder() -> BpeRules:
    splits = _split("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", DEEPSEEK_CJK)
    digits = pre_tokenizers.Digits(individual_digits=True)
    return BpeRules(pre_tokenizers.Sequence([*splits, digits, _bytes()]))


# Names llama.cpp gives the same regexes and flags are aliases of one entry.
RULES: dict[str, Callable[[], BpeRules]] = {
    "gpt-2": _gpt2,
    "phi-2": _gpt2,
    "llama-bpe": _llama3,
    "llama3": _llama3,
    "llama-v3": _llama3,
    "qwen2": _qwen2,
    "deepseek-r1-qwen": _qwen2,
    "smollm": _smollm,
    "starcoder": _smollm,
    "deepseek-llm": _deepseek_llm,
    "deepseek-coder": _deepseek_coder,
    "gpt-4o": _gpt4o,
}
# llama.cpp takes a missing name, or `default`, as its old default split; GPT-2's is the nearest
# real tokenizer (files converted before the names existed).
DEFAULT_NAMES = ("", "default")


def bpe_rules(pre: str) -> BpeRules:
    if pre in DEFAULT_NAMES:
        return _gpt2()
    if pre not in RULES:
        supported = ", ".join(sorted(RULES))
        raise ModelLoadError(f"GGUF pre-tokenizer {pre!r} is not supported yet (supported: {supported}, default)")
    return RULES[pre]()
