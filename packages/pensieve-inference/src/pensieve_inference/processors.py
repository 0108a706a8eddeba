"""Logits processors that follow one sequence token by token (mlx-lm's `processor(tokens,
logits)`), by position: the batch hands a sequence to the solo loop and back by replaying a
token, and a processor that counted calls would then count one twice.

Reading a token's value back from the device makes the host wait for it before it can queue
the next step. So the worker also hands each token it emits to `seen` (it has read them
anyway), and a processor that can act one token late takes them from there.

Speculative decoding (speculative.py) runs a processor over drafts: row i of a pass is processed
as the sequence with i drafts appended would be, and the drafts the model did not take are taken
back (`back_to`), cheaply where a subclass can undo its last tokens (`checkpoint`/`restore`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, cast

import mlx.core as mx
import numpy as np
import structlog

# mlx's stubs leave async_eval untyped: it takes arrays (or trees of them) and returns nothing.
async_eval = cast(Callable[..., None], mx.async_eval)

log = structlog.get_logger("pensieve.inference")

# Output tokens a processor with `state()` can take back without replaying from the start: a
# pass's rejected drafts (speculative.DRAFT_TOKENS at most), with room to spare.
UNDO_TOKENS = 32


class SequenceProcessor:
    """Subclasses say what a token does to their state (`consume`), from a fresh start
    (`reset`), and which tokens may come next (`mask`)."""

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.generated: list[int] = []
        self.seen: list[int] = []  # output tokens the worker has emitted (never rewound)
        self.broken = False  # failed once: steps aside rather than fail the whole batch
        self.undo: deque[Any] = deque(maxlen=UNDO_TOKENS)  # state() before each of the last tokens

    def reset(self) -> None:
        self.generated = []
        self.undo.clear()

    def consume(self, token: int) -> None:
        self.undo.append(self.checkpoint())
        self.generated.append(token)

    def checkpoint(self) -> Any:
        """What `restore` needs to come back here, taken before each token."""
        return None

    def restore(self, state: Any) -> bool:
        """Back to a `checkpoint()` (taken before a token, the tokens since then to be forgotten);
        False when it cannot (then the output is replayed from a fresh start)."""
        return False

    def rewind(self, keep: int) -> None:
        """Forget the output past its first `keep` tokens."""
        back = len(self.generated) - keep
        if 0 < back <= len(self.undo) and self.restore(self.undo[-back]):
            for _ in range(back):
                self.undo.pop()
            del self.generated[keep:]
            return
        replay = self.generated[:keep]
        self.reset()
        for token in replay:
            self.consume(token)

    def valid_prefix(self, drafts: list[int]) -> int:
        """How many of `drafts` may follow the output so far (a draft that may not is wasted)."""
        return len(drafts)

    def mask(self, logits: mx.array, tokens: mx.array) -> mx.array:
        """`tokens` (ending with the newest, maybe not yet computed, token) for masks that
        depend on it on the device."""
        return logits

    def needs_every_token(self) -> bool:
        """False while the processor can catch up later, from `seen`, without waiting."""
        return True

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        return self.at(tokens.shape[-1], tokens, logits)

    def before_waiting(self, logits: mx.array) -> None:
        """Called as `at` may read the newest tokens from the device (which waits for
        them), with this step's logits, not yet computed."""

    def at(
        self,
        length: int,
        tokens: mx.array,
        logits: mx.array,
        newest: Callable[[int], list[int]] | None = None,
        *,
        eager: bool = False,
    ) -> mx.array:
        """`length`: how many tokens the sequence holds (prompt and output), the last of them
        being `tokens[-1]`; generated ones not yet seen are consumed first. `newest(k)`: the
        sequence's last k tokens, where `tokens` may not hold them all; `eager`: they are on
        the host (drafts, say), so they are consumed whether or not needs_every_token()."""
        if self.broken:
            return logits
        try:
            if not eager and self.needs_every_token():
                self.before_waiting(logits)
            # A 1-D array's tolist() is a flat list; mlx types it as any nesting.
            self.advance(length, newest or (lambda k: cast(list[int], tokens.reshape(-1)[-k:].tolist())), eager=eager)
            return self.mask(logits, tokens)
        except Exception as exc:  # noqa: BLE001 — logged by failed(): this processor steps aside
            self.failed(exc)
            return logits

    def failed(self, exc: Exception) -> None:
        log.error("logits_processor_failed", processor=type(self).__name__, error=repr(exc), exc_info=exc)
        self.broken = True

    def admits(self, length: int, known: Callable[[int], list[int]], drafts: list[int]) -> int:
        """How many of `drafts` may follow the sequence's first `length` tokens, the processor
        caught up to there (`known` as `newest` for an eager `at`); all once it has failed."""
        if self.broken:
            return len(drafts)
        try:
            self.advance(length, known, eager=True)
            return self.valid_prefix(drafts)
        except Exception as exc:  # noqa: BLE001 — as at(): this processor steps aside
            self.failed(exc)
            return len(drafts)

    def back_to(self, length: int) -> None:
        """Forget output past the sequence's first `length` tokens (drafts the model did not take)."""
        keep = max(0, length - self.prompt_tokens)
        if self.broken or keep >= len(self.generated):
            return
        try:
            self.rewind(keep)
        except Exception as exc:  # noqa: BLE001 — as at(): this processor steps aside
            self.failed(exc)

    def advance(self, length: int, newest: Callable[[int], list[int]], *, eager: bool = False) -> None:
        """Consume the output up to `length` tokens of sequence: from `seen`, then, when
        `eager` or `needs_every_token()`, the last k from `newest(k)` (which may give fewer)."""
        committed = max(0, length - self.prompt_tokens)
        if committed < len(self.generated):  # the sequence stepped back
            self.rewind(committed)
        while len(self.generated) < committed:
            at = len(self.generated)
            if at < len(self.seen):
                self.consume(self.seen[at])
                continue
            if eager or self.needs_every_token():
                for token in newest(committed - at):
                    self.consume(int(token))
            break


def only(logits: mx.array, allowed: np.ndarray) -> mx.array:
    """Logits with every token outside `allowed` (a boolean vector, maybe shorter) at -inf."""
    vocab = logits.shape[-1]
    keep = np.zeros(vocab, dtype=bool)
    n = min(vocab, allowed.shape[0])
    keep[:n] = allowed[:n]
    return mx.where(mx.array(keep), logits, mx.array(-mx.inf, dtype=logits.dtype))


def only_tokens(logits: mx.array, tokens: list[int]) -> mx.array:
    allowed = np.zeros(logits.shape[-1], dtype=bool)
    allowed[tokens] = True
    return only(logits, allowed)


class Shifted:
    """A processor as generate_step calls it: its `tokens` start at the solo loop's first
    input, `offset` tokens into the sequence."""

    def __init__(self, processor: SequenceProcessor, offset: int) -> None:
        self.processor = processor
        self.offset = offset

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        return self.processor.at(self.offset + tokens.shape[-1], tokens, logits)
