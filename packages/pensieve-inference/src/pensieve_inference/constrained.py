"""Constrained decoding for tool calls, with llguidance: a logits processor that lets through
only tokens that keep the output a valid call of an offered tool, its input valid against
the tool's input_schema.

Under tool_choice any/tool the whole answer is constrained to calls. Under auto the model
writes freely until it opens a call (the dialect's start marker), then the call is
constrained until it closes. The processor follows the sequence by position, so it stays
right when the batch hands a sequence to the solo loop and back (which replays a token)."""

from __future__ import annotations

import functools
import json
from typing import Any

import llguidance
import llguidance.hf
import mlx.core as mx
import numpy as np
import structlog

from .dialects import Dialect, ToolSpecs

log = structlog.get_logger("pensieve.tools")

# Calls are written the way templates print JSON: ", " and ": ", no free whitespace (which a
# weak model could repeat without end).
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}


@functools.lru_cache(maxsize=4)
def grammar_tokenizer(tokenizer: Any) -> llguidance.LLTokenizer:
    """llguidance's view of the model's tokenizer (about 0.3 s to build: once per model)."""
    return llguidance.hf.from_tokenizer(tokenizer._tokenizer, eos_token=sorted(tokenizer.eos_token_ids))


def _literal(tokenizer: Any) -> Any:
    special = set(tokenizer.get_added_vocab())

    def lit(text: str) -> str:
        if text in special:  # a special token cannot be spelled as text: name it by id
            (token,) = tokenizer.encode(text, add_special_tokens=False)
            return f"<[{token}]>"
        return json.dumps(text)

    return lit


def closed(schema: Any) -> Any:
    """The schema with objects that list their properties closed to others (unless it says
    otherwise): still valid output, and the model cannot invent keys without end."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def _call_schema(name: str, arguments_key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": name}, arguments_key: closed(schema) or {"type": "object"}},
        "required": ["name", arguments_key],
        "additionalProperties": False,
        "x-guidance": _JSON_STYLE,
    }


def _call_rules(dialect: Dialect, tools: ToolSpecs, ll_tokenizer: llguidance.LLTokenizer) -> list[str]:
    """One %json rule per tool; a schema llguidance cannot compile is loosened to any object."""
    assert dialect.arguments_key is not None
    rules = []
    for tool in tools:
        function = tool["function"]
        schema = _call_schema(function["name"], dialect.arguments_key, function.get("parameters") or {})
        rule = f"%json {json.dumps(schema)}"
        error = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(f"start: {rule}"), ll_tokenizer)
        if error and not error.startswith("WARNING"):
            log.warning("tool_schema_not_constrained", tool=function["name"], error=error[:200])
            rule = f"%json {json.dumps(_call_schema(function['name'], dialect.arguments_key, {'type': 'object'}))}"
        rules.append(rule)
    return rules


def make_tool_constraint(
    tokenizer: Any, dialect: Dialect, tools: ToolSpecs, *, forced: bool, single: bool, prompt_tokens: int
) -> ToolConstraint | None:
    """The processor for one request, or None when the dialect's calls are not JSON."""
    if dialect.grammar is None or not tools:
        return None
    ll_tokenizer = grammar_tokenizer(tokenizer)
    rules = _call_rules(dialect, tools, ll_tokenizer)
    calls = dialect.grammar("call", _literal(tokenizer))
    call_rule = "call: " + " | ".join(f"call{i}" for i in range(len(rules))) + "\n"
    call_rule += "".join(f"call{i}: {rule}\n" for i, rule in enumerate(rules))
    # A forced answer is one call: a weak model asked to choose between another call and
    # stopping may go on calling (seen with random weights); the next turn can call again.
    forced_grammar = f"start: {calls.single}\n{call_rule}" if forced else None
    after_start = f"start: {calls.after_start}\n{call_rule}" if calls.after_start and not forced else None
    if forced_grammar is None and after_start is None:
        return None
    trigger = dialect.start.encode("utf-8")
    return ToolConstraint(
        ll_tokenizer, forced_grammar=forced_grammar, after_start=after_start, trigger=trigger,
        single=single, prompt_tokens=prompt_tokens, eos=sorted(tokenizer.eos_token_ids),
    )


class ToolConstraint:
    """A logits processor (mlx-lm's `processor(tokens, logits)`), one per sequence."""

    def __init__(
        self,
        ll_tokenizer: llguidance.LLTokenizer,
        *,
        forced_grammar: str | None,
        after_start: str | None,
        trigger: bytes,
        single: bool,
        prompt_tokens: int,
        eos: list[int],
    ) -> None:
        self.ll_tokenizer = ll_tokenizer
        self.forced_grammar = forced_grammar
        self.after_start = after_start
        self.trigger = trigger
        self.single = single
        self.prompt_tokens = prompt_tokens
        self.eos = eos
        self.generated: list[int] = []  # tokens consumed so far
        self._reset()

    def _reset(self) -> None:
        self.generated = []
        self.tail = b""  # the end of the output, to spot the start marker
        self.calls = 0
        self.matcher = self._matcher(self.forced_grammar) if self.forced_grammar else None
        self.mode = "forced" if self.matcher else "watch"  # watch | call | forced | end | free

    def _matcher(self, grammar: str) -> llguidance.LLMatcher:
        return llguidance.LLMatcher(self.ll_tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0)

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        return self.at(tokens.shape[-1], tokens, logits)

    def at(self, length: int, tokens: mx.array, logits: mx.array) -> mx.array:
        """`length`: how many tokens the sequence holds (prompt and output), the last of them
        being `tokens[-1]`: generated ones not yet consumed are taken in first."""
        committed = max(0, length - self.prompt_tokens)
        if committed < len(self.generated):  # the sequence stepped back: replay up to there
            replay = self.generated[:committed]
            self._reset()
            for token in replay:
                self._consume(token)
        new = committed - len(self.generated)
        if new > 0:
            for token in tokens.reshape(-1)[-new:].tolist():
                self._consume(int(token))
        return self._mask(logits)

    def _consume(self, token: int) -> None:
        self.generated.append(token)
        if self.mode in ("forced", "call"):
            assert self.matcher is not None
            if not self.matcher.consume_token(token) or self.matcher.is_error():
                log.warning("tool_constraint_lost", error=self.matcher.get_error()[:200])
                self.mode, self.matcher = "free", None
            elif self.mode == "call" and self.matcher.is_stopped():
                self.calls += 1
                self.mode, self.matcher, self.tail = ("end" if self.single else "watch"), None, b""
            return
        if self.mode != "watch":
            return
        self.tail = (self.tail + self.ll_tokenizer.decode_bytes([token]))[-4 * len(self.trigger) :]
        at = self.tail.find(self.trigger)
        if at < 0 or self.after_start is None:
            return
        # The call opened: constrain the rest of it. Bytes the marker's token carried past the
        # marker are fed to the grammar as tokens of their own.
        extra = self.tail[at + len(self.trigger) :]
        self.matcher, self.mode = self._matcher(self.after_start), "call"
        if extra:
            pieces = self.ll_tokenizer.tokenize_bytes(extra)
            if self.matcher.try_consume_tokens(pieces) < len(pieces):
                log.warning("tool_constraint_lost", error="the call's first token ran past the marker")
                self.mode, self.matcher = "free", None

    def _mask(self, logits: mx.array) -> mx.array:
        if self.mode in ("watch", "free"):
            return logits
        vocab = logits.shape[-1]
        allowed = np.zeros(vocab, dtype=bool)
        if self.mode == "end":
            allowed[self.eos] = True
        else:
            assert self.matcher is not None
            bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
            n = min(vocab, bits.shape[0])
            allowed[:n] = bits[:n].astype(bool)
        return mx.where(mx.array(allowed), logits, mx.array(-mx.inf, dtype=logits.dtype))


class Shifted:
    """The processor as generate_step calls it: its `tokens` start at the solo loop's first
    input, `offset` tokens into the sequence."""

    def __init__(self, processor: ToolConstraint, offset: int) -> None:
        self.processor = processor
        self.offset = offset

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        return self.processor.at(self.offset + tokens.shape[-1], tokens, logits)
