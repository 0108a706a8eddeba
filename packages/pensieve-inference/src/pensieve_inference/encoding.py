"""Prompt text to token ids, encoding only what changed since a recent prompt.

A warm Claude Code turn repeats a ~10K-token prefix and appends a few messages; encoding it whole
costs ~20 ms on a CPU, each time. The Hugging Face tokenizers library splits its input at added
special tokens before it normalizes or pre-tokenizes anything, so the ids from a special token on
depend only on the text from there: a prompt that agrees with a recent one past a `<|im_start|>`
takes that one's ids up to it and encodes the rest (tests/test_encoding.py checks the identity).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Any

from mlx_lm.tokenizer_utils import TokenizerWrapper

from pensieve_model_support import hf_tokenizer

# Recent prompts kept: a few sessions' latest turns, each its ids and offsets (~1 MB at 10K tokens).
KEEP = 8
PROBE = "Probe: <|im_start|>user\nHé, 123 (tabs\t)\n  and spaces<|im_end|>\n"


@dataclass(frozen=True)
class Encoded:
    text: str
    ids: list[int]
    # Each token's end, in characters of `text` (None: the tokenizer gives no offsets).
    ends: list[int] | None
    # (token index, character start) of the special tokens where a later prompt may take
    # these ids and go on.
    splices: tuple[tuple[int, int], ...] = ()
    # How many characters were encoded afresh (the rest came from a recent prompt).
    fresh_chars: int = 0

    def tokens_within(self, chars: int) -> int | None:
        """How many leading tokens end within the first `chars` characters (None: unknown)."""
        return None if self.ends is None else bisect.bisect_right(self.ends, chars)


def common_chars(a: str, b: str) -> int:
    """The length of the longest common prefix, by halving (each comparison runs in C)."""
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while low < high:  # a[:low] agrees, a[:high] does not
        mid = (low + high + 1) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid - 1
    return low


class PromptEncoder:
    """Encodes prompts like `tokenizer.encode(text, add_special_tokens=False)`, reusing the ids
    of a recent prompt up to the last special token the two agree past."""

    def __init__(self, tokenizer: TokenizerWrapper, *, keep: int = KEEP) -> None:
        self._tokenizer = tokenizer
        self._keep = keep
        self._recent: list[Encoded] = []
        self._lock = threading.Lock()
        self._backend = _backend(tokenizer)
        self._special = _splice_tokens(self._backend) if self._backend is not None else {}

    def encode(self, text: str) -> Encoded:
        if self._backend is None:
            return Encoded(text, self._tokenizer.encode(text, add_special_tokens=False), None, fresh_chars=len(text))
        with self._lock:
            recent = list(self._recent)
        start, head_ids, head_ends = 0, [], []
        head_splices: tuple[tuple[int, int], ...] = ()
        best = max(recent, key=lambda e: common_chars(e.text, text), default=None)
        if best is not None:
            agreed = common_chars(best.text, text)
            if agreed == len(text) == len(best.text):
                return self._remember(best)
            assert best.ends is not None
            # The last splice point whose special token lies wholly in the agreed text, or the
            # end of a remembered answer where the new text goes on with a special token.
            usable = [(k, at) for k, at in best.splices if self._splices_at(best, k, at, agreed, text)]
            if usable:
                k, start = usable[-1]
                head_ids, head_ends, head_splices = best.ids[:k], best.ends[:k], tuple(usable[:-1])
        encoded = self._backend.encode(text[start:], add_special_tokens=False)
        pairs = enumerate(zip(encoded.ids, encoded.offsets, strict=True))
        tail = [(len(head_ids) + i, at + start) for i, (t, (at, _)) in pairs if t in self._special]
        ends = head_ends + _ends(encoded.offsets, start)
        ids = head_ids + list(encoded.ids)
        return self._remember(Encoded(text, ids, ends, head_splices + tuple(tail), len(text) - start))

    def _splices_at(self, best: Encoded, k: int, at: int, agreed: int, text: str) -> bool:
        if k < len(best.ids):
            assert best.ends is not None
            return best.ends[k] <= agreed
        return at <= agreed and text.startswith(tuple(self._special.values()), at)

    def remember_answer(self, prompt: Encoded, answer: list[int], text: str) -> bool:
        """An answer generated for `prompt`, as token ids and their text: the next turn, which
        renders the text after the prompt, takes these ids for it (as the model produced them,
        where a fresh encoding may split the text otherwise), so the cache holding them is read
        on. False when the ids do not spell the text (nothing is kept)."""
        if self._backend is None or prompt.ends is None or self._tokenizer.decode(answer) != text:
            return False
        end = len(prompt.text) + len(text)
        # Within the answer the ends are only needed not to decrease; its last one is exact.
        ends = prompt.ends + [end] * len(answer)
        splices = (*prompt.splices, (len(prompt.ids) + len(answer), end))
        self._remember(Encoded(prompt.text + text, prompt.ids + answer, ends, splices))
        return True

    def _remember(self, encoded: Encoded) -> Encoded:
        with self._lock:
            others = [e for e in self._recent if e is not encoded]
            self._recent = [*others[len(others) - self._keep + 1 :], encoded]
        return encoded


def _ends(offsets: list[tuple[int, int]], shift: int) -> list[int]:
    # Never decreasing, so a bisect finds the tokens within a length (byte pieces of one
    # character share its span).
    ends, last = [], shift
    for _, end in offsets:
        last = max(last, end + shift)
        ends.append(last)
    return ends


def _backend(tokenizer: TokenizerWrapper) -> Any:
    """The tokenizers-library object behind a fast Hugging Face tokenizer, when it encodes as
    the tokenizer does (checked on a probe); None otherwise (then every prompt is encoded whole)."""
    backend = getattr(hf_tokenizer(tokenizer), "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "get_added_tokens_decoder"):
        return None
    try:
        same = backend.encode(PROBE, add_special_tokens=False).ids == tokenizer.encode(PROBE, add_special_tokens=False)
    except Exception:  # noqa: BLE001 — an exotic tokenizer: encode the plain way
        return None
    return backend if same else None


def _splice_tokens(backend: Any) -> dict[int, str]:
    # Special tokens matched on their own text alone: one that takes the spaces beside it
    # (lstrip) or needs word edges (single_word) depends on the text around it.
    return {
        i: token.content
        for i, token in backend.get_added_tokens_decoder().items()
        if token.special and not token.lstrip and not token.single_word
    }
