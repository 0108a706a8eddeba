"""A GGUF vocabulary tokenizes as the Hugging Face tokenizer it was converted from.

For each `tokenizer.ggml.pre` name, the reference is the tokenizer.json the name stands for
(its pre-tokenizer chain written here as that file spells it) over a vocabulary trained on the
corpus, and over SmolLM2's real one; the vocabulary goes into metadata as llama.cpp's converter
writes it. For SentencePiece, the reference is SentencePiece itself, on a model built here.
"""

import functools
import json
from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer, pre_tokenizers, trainers
from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

from pensieve_core.errors import ModelLoadError
from pensieve_model_support.gguf.tokenizer import build_tokenizer, detokenizer_class, eos_token_ids
from pensieve_model_support.testing import _bundled_tokenizer_metadata

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6

CORPUS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "\n\nHello\n\n\nworld\n \n  \n\tTabs\tand\r\nCRLF lines\n",
    "Numbers: 12345, 3.14159, 1000000 and ١٢٣ and ½.",
    "I'll say it's DON'T, we've, they'RE, you'd, she'S.",
    "日本語のテキストと中文字符，还有한국어 문장도 있습니다。",
    "Accents: café, naïve, résumé, Ærøskøbing, Straße, e\u0301 (combining), ǅemal.",
    "Emoji: 🤖🚀 👍🏽 family 👨‍👩‍👧 and ✨.",
    "Ελληνικά και русский текст, עברית, العربية, हिन्दी.",
    'def f(x: int) -> dict[str, int]:\n    return {"a": x ** 2, "b": [1, 2, 3]}\n\n\nclass A:\n    pass\n',
    '{"key": "value", "list": [1, 2.5, null, true], "nested": {"é": "ü"}}',
    "   leading spaces and trailing   ",
    " one leading space, then  two, then\u3000ideographic.",
    "ＦＵＬＬＷＩＤＴＨ！ and ‘quotes’ “double” — dashes… ",
    "x=1;y+=2;z<<=3 if a!=b else c//d  # comment\n",
    "CamelCaseWord lowercase UPPERCASE MixedUP123abc",
]
# Text never seen in training: pieces must come from merges and bytes.
UNSEEN = ["Zygomorphic xylophones quizzed 98765432 jovial 🦄 ñandúes 龍", "\n\n\n\nfin", "   "]
TEXTS = CORPUS + UNSEEN
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]

BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}


def _split(regex: str) -> dict[str, object]:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


DEEPSEEK_CJK = "[一-龥ࠀ-一가-퟿]+"
# The normalizer, pre-tokenizer and BPE flags of the tokenizer.json each name stands for.
REFERENCE: dict[str, tuple[dict[str, object] | None, dict[str, object], bool]] = {
    # openai-community/gpt2
    "gpt-2": (None, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}, False),
    # meta-llama/Meta-Llama-3-8B
    "llama-bpe": (
        None,
        {
            "type": "Sequence",
            "pretokenizers": [
                _split(
                    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
                ),
                BYTE_LEVEL,
            ],
        },
        True,
    ),
    # Qwen/Qwen2.5-7B
    "qwen2": (
        {"type": "NFC"},
        {
            "type": "Sequence",
            "pretokenizers": [
                _split(
                    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
                ),
                {**BYTE_LEVEL, "trim_offsets": False},
            ],
        },
        False,
    ),
    # HuggingFaceTB/SmolLM2-135M
    "smollm": (
        None,
        {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ],
        },
        False,
    ),
    # deepseek-ai/deepseek-llm-7b-base
    "deepseek-llm": (
        {"type": "Sequence", "normalizers": []},
        {
            "type": "Sequence",
            "pretokenizers": [
                _split("[\r\n]"),
                _split(
                    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷ"
                    "ᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-"
                    "ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻"
                    "𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
                ),
                _split("\\s?[!-/:-~！-／：-～‘-‟　-。]+"),
                _split("\\s+$"),
                _split(DEEPSEEK_CJK),
                {"type": "Digits", "individual_digits": False},
                BYTE_LEVEL,
            ],
        },
        False,
    ),
    # deepseek-ai/deepseek-coder-6.7b-base
    "deepseek-coder": (
        {"type": "Sequence", "normalizers": []},
        {
            "type": "Sequence",
            "pretokenizers": [
                _split("[\r\n]"),
                _split("\\s?\\p{L}+"),
                _split("\\s?\\p{P}+"),
                _split(DEEPSEEK_CJK),
                {"type": "Digits", "individual_digits": True},
                BYTE_LEVEL,
            ],
        },
        False,
    ),
    # Xenova/gpt-4o
    "gpt-4o": (
        None,
        {
            "type": "Sequence",
            "pretokenizers": [
                {
                    **_split(
                        "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
                        "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
                        "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}"
                        "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
                    ),
                    "behavior": "Removed",
                    "invert": True,
                },
                BYTE_LEVEL,
            ],
        },
        False,
    ),
}


def _reference(pre: str, vocab: dict[str, int], merges: list[list[str]], specials: list[str] = SPECIALS) -> Tokenizer:
    normalizer, pre_tokenizer, ignore_merges = REFERENCE[pre]
    model = {"type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": ignore_merges, "fuse_unk": False}
    spec = {"version": "1.0", "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "model": model}
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials if t in vocab])
    return tokenizer


@functools.cache
def _trained(pre: str) -> tuple[dict[str, int], list[list[str]], list[str]]:
    """A small vocabulary learnt with the name's own split rules, as its model's was."""
    tokenizer = _reference(pre, {}, [])
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], model["merges"], SPECIALS


@functools.cache
def _smollm2() -> tuple[dict[str, int], list[list[str]], list[str]]:
    meta = _bundled_tokenizer_metadata()
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    specials = [tok for tok, kind in zip(tokens, types, strict=True) if kind == CONTROL]
    return {tok: i for i, tok in enumerate(tokens)}, [m.split(" ", 1) for m in meta["tokenizer.ggml.merges"]], specials


def _gguf_metadata(
    pre: str, vocab: dict[str, int], merges: list[list[str]], specials: list[str] = SPECIALS
) -> dict[str, object]:
    """What convert_hf_to_gguf.py writes for a byte-level BPE: tokens by id, control types, merges."""
    tokens = sorted(vocab, key=vocab.__getitem__)
    special = set(specials)
    types = [CONTROL if t in special else NORMAL for t in tokens]
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [" ".join(m) for m in merges],
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
    }


VOCABS = {"trained": _trained, "smollm2": lambda _pre: _smollm2()}


@pytest.mark.parametrize("source", VOCABS)
@pytest.mark.parametrize("pre", REFERENCE)
def test_byte_level_bpe_tokenizes_as_its_reference(pre, source):
    vocab = VOCABS[source](pre)
    reference = _reference(pre, *vocab)
    ours = build_tokenizer(_gguf_metadata(pre, *vocab))
    for text in [*TEXTS, f"{vocab[2][0]}user\n\nHi{vocab[2][-1]}"]:
        ids = reference.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, add_special_tokens=False) == ids, text
        assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=False)


def test_llama3_keeps_a_newline_run_in_one_token():
    llama3 = build_tokenizer(_gguf_metadata("llama-bpe", *_smollm2()))
    gpt2 = build_tokenizer(_gguf_metadata("gpt-2", *_smollm2()))
    assert llama3.convert_ids_to_tokens(llama3.encode("\n\nHello", add_special_tokens=False)) == ["ĊĊ", "Hello"]
    assert gpt2.convert_ids_to_tokens(gpt2.encode("\n\nHello", add_special_tokens=False)) == ["Ċ", "Ċ", "Hello"]


def test_split_rules_differ_so_the_comparison_can_fail():
    reference = _reference("llama-bpe", *_trained("llama-bpe"))
    wrong = build_tokenizer(_gguf_metadata("gpt-2", *_trained("llama-bpe")))
    assert any(
        wrong.encode(t, add_special_tokens=False) != reference.encode(t, add_special_tokens=False).ids for t in TEXTS
    )


def test_bos_follows_llama_cpp_defaults_unless_the_file_says():
    meta = _gguf_metadata("llama-bpe", *_trained("llama-bpe"))
    assert build_tokenizer(meta).encode("hi")[0] == 0
    assert build_tokenizer({**meta, "tokenizer.ggml.add_bos_token": False}).encode("hi")[0] != 0
    qwen = _gguf_metadata("qwen2", *_trained("qwen2"))
    assert build_tokenizer(qwen).encode("hi")[0] != 0
    with_eos = build_tokenizer({**qwen, "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": True})
    ids = with_eos.encode("hi")
    assert (ids[0], ids[-1]) == (0, 1)


def test_unknown_pre_tokenizer_is_refused_by_name():
    meta = _gguf_metadata("llama-bpe", *_trained("llama-bpe"))
    with pytest.raises(ModelLoadError, match=r"'tekken'.*supported: .*llama-bpe"):
        build_tokenizer({**meta, "tokenizer.ggml.pre": "tekken"})
    default = build_tokenizer({**meta, "tokenizer.ggml.pre": "default"})
    assert (
        default.encode("hi 12345", add_special_tokens=False)
        == _reference("gpt-2", *_trained("llama-bpe")).encode("hi 12345").ids
    )


def test_end_of_turn_and_message_ids_end_generation_too():
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "c", "d"]}
    ids = {"tokenizer.ggml.eos_token_id": 1, "tokenizer.ggml.eot_token_id": 3, "tokenizer.ggml.eom_token_id": 1}
    assert eos_token_ids({**meta, **ids}) == [1, 3]
    assert eos_token_ids({**meta, "tokenizer.ggml.eos_token_id": 2}) == [2]


# SentencePiece: a BPE model with byte fallback, like Llama 2's and Mistral's tokenizer.model.


@functools.cache
def _spm_pieces() -> list[tuple[str, float, int]]:
    """Pieces laid out as SentencePiece's BPE trainer lays them out: specials, 256 bytes, merged
    pieces by rank (score -rank), then the characters; some characters are left to byte fallback."""
    tokenizer = Tokenizer.from_str(
        json.dumps(
            {
                "version": "1.0",
                "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
                "model": {"type": "BPE", "vocab": {}, "merges": []},
            }
        )
    )
    trainer = trainers.BpeTrainer(vocab_size=900, limit_alphabet=150, show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab, key=vocab.__getitem__)
    chars = [p for p in by_id if len(p) == 1]
    merged = [p for p in by_id if len(p) > 1]
    pieces = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    pieces += [("<tool_call>", 0.0, USER_DEFINED)]
    pieces += [(p, -float(i), NORMAL) for i, p in enumerate(merged)]
    pieces += [(c, -float(len(merged) + i), NORMAL) for i, c in enumerate(chars)]
    return pieces


def _spm_model(path: Path, add_dummy_prefix: bool) -> object:
    proto = import_protobuf().ModelProto()
    for text, score, kind in _spm_pieces():
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = text, score, kind
    spec = proto.trainer_spec
    spec.model_type, spec.byte_fallback, spec.vocab_size = 2, True, len(proto.pieces)
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, 1, 2, -1
    norm = proto.normalizer_spec
    norm.name, norm.add_dummy_prefix, norm.escape_whitespaces, norm.remove_extra_whitespaces = (
        "identity",
        add_dummy_prefix,
        True,
        False,
    )
    path.write_bytes(proto.SerializeToString())
    return proto


def _spm_metadata(add_dummy_prefix: bool) -> dict[str, object]:
    """What convert_hf_to_gguf.py's _set_vocab_sentencepiece writes."""
    pieces = _spm_pieces()
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": [p for p, _, _ in pieces],
        "tokenizer.ggml.scores": [s for _, s, _ in pieces],
        "tokenizer.ggml.token_type": [t for _, _, t in pieces],
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_space_prefix": add_dummy_prefix,
    }


@pytest.mark.parametrize("add_dummy_prefix", [True, False])
def test_sentencepiece_tokenizes_as_sentencepiece(tmp_path, add_dummy_prefix):
    path = tmp_path / "tokenizer.model"
    proto = _spm_model(path, add_dummy_prefix)
    sentencepiece = SentencePieceBackend(vocab_file=str(path)).sp_model
    ours = build_tokenizer(_spm_metadata(add_dummy_prefix))
    byte_fallback = 0
    for text in [*TEXTS, "<tool_call>{}</tool_call> x"]:
        ids = ours.encode(text, add_special_tokens=False)
        assert ids == sentencepiece.encode(text), text
        assert ours.decode(ids) == text
        byte_fallback += any(3 <= i < 259 for i in ids)
    assert byte_fallback > 0
    # Text around special tokens: as transformers builds it from the same model (legacy, as llama.cpp).
    hf = SpmConverter.build_tokenizer_from_spm_proto(proto, {p: i for i, (p, _, _) in enumerate(_spm_pieces())})
    hf.add_special_tokens(["<s>", "</s>"])
    for text in ["<s>Hello world</s><s> again\n", "</s>\n\n12345 日本"]:
        assert ours.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False).ids, text


def test_sentencepiece_adds_bos_and_streams_with_its_own_detokenizer():
    meta = _spm_metadata(True)
    tokenizer = build_tokenizer(meta)
    assert tokenizer.encode("hi")[0] == 1
    assert build_tokenizer({**meta, "tokenizer.ggml.add_bos_token": False}).encode("hi")[0] != 1
    detokenizer = detokenizer_class(meta)(tokenizer)
    for token in tokenizer.encode("Hello wörld 🦄\n  x", add_special_tokens=False):
        detokenizer.add_token(token)
    detokenizer.finalize()
    assert detokenizer.text == "Hello wörld 🦄\n  x"
