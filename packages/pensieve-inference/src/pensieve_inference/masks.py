"""Grammar masks for a batch step, filled together. mlx-lm's BatchGenerator calls each row's
logits processors one row after another, and a grammar's next-token mask is host work. So the
first grammar row called in a step fills the masks of every grammar row after it at once, with
llguidance's own threads (`fill_next_token_bitmask_par`) into one preallocated bitmask that is
unpacked in one call and goes to the device as one array; each row masks its logits with its
own row of it. Outside a batch step (the lone sequence's generate_step) a row computes its own
mask and unpacks it the same way.

Which rows a step holds, their lengths and the tokens about to be fed come from mlx-lm's
GenerationBatch, read by `BatchMasks.step` around the batch's `next()`. Worker thread only,
but for the rows' catch-up and fill, which run on a helper thread while the worker launches
the step's forward pass (`BatchMasks.launch`): MLX's launch lets other Python threads run, and
when the step is bound by the host's launching, that hides the grammar's work behind it."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import llguidance
import llguidance.numpy
import mlx.core as mx
import numpy as np

from .processors import SequenceProcessor, async_eval


@functools.cache
def _executor() -> llguidance.LLExecutor:
    return llguidance.LLExecutor()  # its threads: 80% of the CPUs, at most 32


@functools.cache
def _helper() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="pensieve-masks")  # no MLX work runs on it


def allowed(bits: np.ndarray, vocab: int) -> mx.array:
    """llguidance's bitmask rows (int32 words; bit j of word w is token 32w + j) as booleans
    over the model's `vocab` logits, False past the tokenizer's tokens, all rows in one call.
    On the CPU backend numpy unpacks ~7x faster than MLX's elementwise ops; on a GPU the words
    go up as they are (1/8 of the booleans' bytes) and the device unpacks them."""
    if mx.default_device() == mx.gpu:
        return unpacked_on_device(bits, vocab)
    keep = np.unpackbits(bits.view(np.uint8), axis=-1, bitorder="little").astype(bool)
    if keep.shape[-1] < vocab:
        keep = np.concatenate([keep, np.zeros((*keep.shape[:-1], vocab - keep.shape[-1]), dtype=bool)], axis=-1)
    return mx.array(keep[..., :vocab])


def unpacked_on_device(bits: np.ndarray, vocab: int) -> mx.array:
    words = mx.array(bits.view(np.uint32))
    keep = ((words[..., None] >> mx.arange(32, dtype=mx.uint32)) & 1).astype(mx.bool_)
    keep = keep.reshape(*words.shape[:-1], words.shape[-1] * 32)
    if keep.shape[-1] < vocab:
        keep = mx.concatenate([keep, mx.zeros((*keep.shape[:-1], vocab - keep.shape[-1]), dtype=mx.bool_)], axis=-1)
    return keep[..., :vocab]


def masked(logits: mx.array, keep: mx.array) -> mx.array:
    return mx.where(keep, logits, mx.array(-mx.inf, dtype=logits.dtype))


class GrammarProcessor(SequenceProcessor):
    """A processor whose mask, when it has one, is an llguidance matcher's next-token mask
    (`grammar()`); in a batch step that mask comes from the batch's one fill."""

    def __init__(self, prompt_tokens: int, ll_tokenizer: llguidance.LLTokenizer) -> None:
        super().__init__(prompt_tokens)
        self.ll_tokenizer = ll_tokenizer
        self.masks: BatchMasks | None = None  # the batch it decodes in (set by BatchMasks.step)
        # A subclass's matcher, how many tokens it has consumed, and the last one let go of
        # once complete (with its count): what a rewind rolls back (llguidance's rollback).
        self.matcher: llguidance.LLMatcher | None = None
        self.matched = 0
        self.closed: tuple[llguidance.LLMatcher, int] | None = None

    def grammar(self) -> llguidance.LLMatcher | None:
        """The matcher that decides the next token, or None."""
        return None

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        newest = self.masks.newest(self, tokens) if self.masks is not None else None
        return self.at(tokens.shape[-1], tokens, logits, newest)

    def before_waiting(self, logits: mx.array) -> None:
        # mlx-lm queues a step's forward pass only after its sample: queue it now, so the device
        # runs it while the host reads the step's input tokens (`BatchMasks.newest`) and fills
        # masks (the first grammar row of a batch step fills them; the others find theirs ready).
        if self.masks is None:
            async_eval(logits)
        elif self.masks.leads(self):
            self.masks.launch(self, logits)

    def valid_prefix(self, drafts: list[int]) -> int:
        matcher = self.grammar()
        return len(drafts) if matcher is None else int(matcher.validate_tokens(drafts))

    def drafts_through(self, tail: bytes, marker: bytes, drafts: list[int]) -> int:
        """How many drafts reach no further than `marker` (with the output's `tail` before them):
        what follows a marker that starts a grammar is the grammar's to say."""
        for i, token in enumerate(drafts):
            tail += self.ll_tokenizer.decode_bytes([token])
            if marker in tail:
                return i + 1
        return len(drafts)

    def rolled_back(self, matcher: llguidance.LLMatcher | None, matched: int) -> bool:
        """`matcher` (from a `checkpoint()`) back to its first `matched` tokens; False when it is
        neither the one in use nor the one last closed, or is in error (which is for good)."""
        if matcher is None:
            return True
        if matcher is self.matcher:
            count = self.matched
        elif self.closed is not None and matcher is self.closed[0]:
            count = self.closed[1]
        else:
            return False
        return not matcher.is_error() and bool(matcher.rollback(count - matched))

    def grammar_mask(self, logits: mx.array) -> mx.array:
        keep = self.masks.row(self, logits.shape[-1]) if self.masks is not None else None
        if keep is None:
            matcher = self.grammar()
            assert matcher is not None
            keep = allowed(np.frombuffer(matcher.compute_bitmask(), dtype=np.int32), logits.shape[-1])
        return masked(logits, keep)

    def prepare(self, length: int, newest: int) -> bool:
        """Catch up as this row's own call at `length` would, `newest` being the token it
        ends with; False when it cannot (more than one token not yet seen) or failed."""
        if self.broken:
            return False
        try:
            self.advance(length, lambda k: [newest] if k == 1 else [])
        except Exception as exc:  # noqa: BLE001 — as its own call would: it steps aside
            self.failed(exc)
            return False
        return len(self.generated) == max(0, length - self.prompt_tokens)


@dataclass
class _Step:
    inputs: Any  # the tokens the step feeds, one per row (an mx.array, computed by then)
    rows: list[tuple[int, GrammarProcessor, int]]  # (row, processor, its length in this step)
    index: dict[GrammarProcessor, int] = field(default_factory=dict)  # processor → place in rows
    values: list[int] | None = None  # `inputs` on the host, once read

    def input_values(self) -> list[int]:
        if self.values is None:
            self.values = self.inputs.tolist()
        return self.values


class BatchMasks:
    """One ModelBatch's grammar rows, step by step. `fills` and `filled` count the batch's
    fills and the masks they made (filled / fills: rows per fill); `read_ahead` the rows that
    read their newest token from the step's inputs; `beside_launch` the fills made on the
    helper thread while the forward pass launched."""

    # Reading the step's inputs before the launch waited this long: the device is behind the
    # host, so the launch goes first again (the device must not idle while it happens), for
    # LAUNCH_FIRST steps before the inputs are tried first again.
    READY_WAIT = 0.0003
    LAUNCH_FIRST = 32

    def __init__(self) -> None:
        self.fills = 0
        self.filled = 0
        self.read_ahead = 0  # newest tokens read from a step's inputs (`newest`)
        self.beside_launch = 0
        self._launch_first = 0  # steps left that launch before reading the inputs
        self._bits = np.zeros((0, 0), dtype=np.int32)
        self._step: _Step | None = None
        self._ready: dict[GrammarProcessor, tuple[int, mx.array]] = {}  # → (output length, mask)

    @contextlib.contextmanager
    def step(self, generator: Any) -> Iterator[None]:
        """Around `generator.next()`, whose decode step runs first: its grammar rows, read
        from mlx-lm's GenerationBatch before it runs (attributes of mlx-lm 0.32; a batch
        without them fills row by row). Rows joining in that call fill their own first masks."""
        batch = getattr(generator, "_generation_batch", None)
        per_row = getattr(batch, "logits_processors", None) or []
        tokens = getattr(batch, "tokens", None)
        inputs = getattr(batch, "_next_tokens", None)
        rows = []
        if tokens is not None and inputs is not None:
            for e, processors in enumerate(per_row):
                for p in processors or ():
                    if isinstance(p, GrammarProcessor):
                        p.masks = self
                        rows.append((e, p, len(tokens[e]) + 1))  # the step feeds one more
        self._step = _Step(inputs, rows, {p: i for i, (_, p, _) in enumerate(rows)})
        try:
            yield
        finally:
            self._step = None
            self._ready.clear()

    def leads(self, p: GrammarProcessor) -> bool:
        """Whether `p` is called first of this step's grammar rows, or outside a batch step."""
        step = self._step
        return step is None or step.index.get(p, 0) == 0

    def launch(self, p: GrammarProcessor, logits: mx.array) -> None:
        """Queue the step's forward pass (`logits`, `p` leading the step's grammar rows). When
        the step's inputs are on the host already, every grammar row catches up and the batch's
        masks are filled on the helper thread meanwhile; `row` then finds them ready."""
        step = self._step
        if step is None or p not in step.index or self._launch_first > 0:
            self._launch_first = max(0, self._launch_first - 1)
            async_eval(logits)
            return
        started = time.perf_counter()
        values = step.input_values()
        if time.perf_counter() - started > self.READY_WAIT:
            self._launch_first = self.LAUNCH_FIRST
            async_eval(logits)
            return
        self.read_ahead += 1
        filling = _helper().submit(self._catch_up_and_fill, step, values)
        async_eval(logits)
        group, bits = filling.result()
        self._ready.clear()
        if group:
            keep = allowed(bits, logits.shape[-1])
            for i, q in enumerate(group):
                self._ready[q] = (len(q.generated), keep[i])
            self.beside_launch += 1

    def _catch_up_and_fill(self, step: _Step, values: list[int]) -> tuple[list[GrammarProcessor], np.ndarray]:
        """On the helper thread: no MLX here (the worker is launching on the device)."""
        group = []
        for e, q, length in step.rows:
            if q.prepare(length, values[e]) and (m := q.grammar()) is not None:
                group.append((q, m))
        return [q for q, _ in group], self._fill_bits(group) if group else self._bits[:0]

    def newest(self, p: GrammarProcessor, tokens: mx.array) -> Callable[[int], list[int]] | None:
        """`p`'s newest token read from the step's inputs, computed a step ago, rather than from
        `tokens` (mlx-lm's token buffer): that buffer's update is a new op, queued on the device
        behind the forward pass just started, so reading it waited for the whole pass."""
        step = self._step
        if step is None or p not in step.index:
            return None
        e, _, length = step.rows[step.index[p]]
        if tokens.shape[-1] != length:
            return None

        def read(k: int) -> list[int]:
            if k == 1:
                self.read_ahead += 1
                return [step.input_values()[e]]
            return cast(list[int], tokens.reshape(-1)[-k:].tolist()) if k > 0 else []

        return read

    def row(self, p: GrammarProcessor, vocab: int) -> mx.array | None:
        """`p`'s mask for this step, filled with the rows after it if not yet; None outside a
        batch step (the caller computes its own)."""
        ready = self._ready.pop(p, None)
        if ready is not None and ready[0] == len(p.generated):
            return ready[1]
        step = self._step
        if step is None or p not in step.index:
            return None
        self._ready.clear()
        matcher = p.grammar()
        assert matcher is not None
        group = [(p, matcher)]
        for e, q, length in step.rows[step.index[p] + 1 :]:
            if q.prepare(length, step.input_values()[e]) and (m := q.grammar()) is not None:
                group.append((q, m))
        keep = self._fill(group, vocab)
        for i, (q, _) in enumerate(group[1:], start=1):
            self._ready[q] = (len(q.generated), keep[i])
        return keep[0]

    def _fill(self, group: list[tuple[GrammarProcessor, llguidance.LLMatcher]], vocab: int) -> mx.array:
        return allowed(self._fill_bits(group), vocab)

    def _fill_bits(self, group: list[tuple[GrammarProcessor, llguidance.LLMatcher]]) -> np.ndarray:
        n = len(group)
        words = llguidance.numpy.get_bitmask_shape(1, group[0][0].ll_tokenizer.vocab_size)[1]
        if self._bits.shape[0] < n or self._bits.shape[1] != words:
            self._bits = np.zeros((max(n, 2 * self._bits.shape[0]), words), dtype=np.int32)
        bits = self._bits[:n]
        if n == 1:  # the pool's hand-off costs more than it saves for one mask
            llguidance.numpy.fill_next_token_bitmask(group[0][1], bits)
        else:
            llguidance.numpy.fill_next_token_bitmask_par(_executor(), [(m, i) for i, (_, m) in enumerate(group)], bits)
        self.fills += 1
        self.filled += n
        return bits
