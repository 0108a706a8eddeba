"""What `pensieve models` says about a GGUF file without loading it: architecture, context,
main tensor type, chat template, and whether pensieve loads it (and why not).
Reads only the header (`tensor_types`' cursor): the gguf package's reader takes ~2 s a file."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import msgspec

from pensieve_core.errors import ModelLoadError

from .architectures import SUPPORTED as ARCHITECTURES
from .pretokenizers import DEFAULT_NAMES, RULES
from .tensor_types import _STRING, gguf_header, tensor_type_refusal, tensor_types

_INTS = {4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


class GGUFSummary(msgspec.Struct, kw_only=True):
    architecture: str
    context_length: int | None
    quantization: str
    has_chat_template: bool
    loads: bool
    why_not: str | None = None


def _metadata(path: Path) -> dict[str, object]:
    """Every key: its value when a string or an integer, else None."""
    values: dict[str, object] = {}
    with gguf_header(path) as (r, _n_tensors, n_kv):
        for _ in range(n_kv):
            key = r.string().decode("utf-8", "replace")
            (kind,) = r.take("<I")
            if kind == _STRING:
                values[key] = r.string().decode("utf-8", "replace")
            elif kind in _INTS:
                values[key] = r.take(_INTS[kind])[0]
            else:
                values[key] = None
                r.skip_value(kind)
    return values


def _tokenizer_refusal(meta: dict[str, object]) -> str | None:
    """What the tokenizer builder would refuse (tokenizer.py), said before loading."""
    kind, pre = meta.get("tokenizer.ggml.model"), str(meta.get("tokenizer.ggml.pre") or "")
    if kind not in ("gpt2", "llama"):
        return f"tokenizer type {kind!r} is not supported yet (supported: gpt2 byte-level BPE, llama SentencePiece)"
    if kind == "gpt2" and pre not in RULES and pre not in DEFAULT_NAMES:
        return f"pre-tokenizer {pre!r} is not supported yet (supported: {', '.join(sorted(RULES))}, default)"
    return None


def summarize_gguf(path: Path) -> GGUFSummary:
    """Never raises for a bad file: one that cannot be read is a summary that does not load."""
    try:
        meta = _metadata(path)
        types = tensor_types(path)
    except (OSError, ValueError, struct.error, ModelLoadError) as exc:
        return GGUFSummary(
            architecture="?",
            context_length=None,
            quantization="?",
            has_chat_template=False,
            loads=False,
            why_not=f"cannot read the GGUF header: {exc}",
        )
    arch = str(meta.get("general.architecture") or "?")
    context = meta.get(f"{arch}.context_length")
    # The matrices' type names the file's quantization (norms and biases stay F32).
    matrices = Counter(t for name, t in types.items() if "norm" not in name and not name.endswith(".bias"))
    why_not = tensor_type_refusal(types)
    if why_not is None and arch not in ARCHITECTURES:
        why_not = f"architecture {arch!r} is not supported yet (supported: {', '.join(ARCHITECTURES)})"
    if why_not is None:
        why_not = _tokenizer_refusal(meta)
    return GGUFSummary(
        architecture=arch,
        context_length=context if isinstance(context, int) else None,
        quantization=matrices.most_common(1)[0][0] if matrices else "?",
        has_chat_template="tokenizer.chat_template" in meta,
        loads=why_not is None,
        why_not=why_not,
    )
