"""Constrained decoding for tool calls, with llguidance: a logits processor that lets through
only tokens that keep the output a valid call of an offered tool, its input valid against
the tool's input_schema.

Under tool_choice any/tool the whole answer is constrained to calls. Under auto the model
writes freely until it opens a call (the dialect's start marker), then the call is
constrained until it closes."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import llguidance
import mlx.core as mx
import numpy as np
import structlog

from pensieve_model_support import hf_tokenizer

from .dialects import Dialect, ToolSpecs
from .markers import held_prefix
from .masks import GrammarProcessor, allowed, masked
from .processors import only_tokens

log = structlog.get_logger("pensieve.tools")

# A forced call is written the way templates print JSON: ", " and ": ", no free whitespace
# (which a weak model could repeat without end). A call the model chose to write keeps its own
# spacing, within a few characters.
_FORCED_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}
_CHOSEN_STYLE = {"whitespace_pattern": r"[ \t\n]{0,4}", "item_separator": ",", "key_separator": ":", "lenient": True}


@functools.lru_cache(maxsize=4)
def grammar_tokenizer(tokenizer: Any) -> llguidance.LLTokenizer:
    """llguidance's view of the model's tokenizer (about 0.3 s to build: once per model), from
    the fast tokenizer's own JSON, as llguidance.hf does."""
    backend = copy.copy(hf_tokenizer(tokenizer).backend_tokenizer)
    backend.no_padding()
    backend.no_truncation()
    return llguidance.LLTokenizer(backend.to_str(), eos_token=sorted(tokenizer.eos_token_ids))


@functools.lru_cache(maxsize=16)
def marker_tokens(ll_tokenizer: llguidance.LLTokenizer, marker: bytes) -> tuple[int, ...]:
    """Tokens whose text ends with the whole marker (a special token, or a merged spelling)."""
    return tuple(i for i in range(ll_tokenizer.vocab_size) if ll_tokenizer.decode_bytes([i]).endswith(marker))


def _literal(tokenizer: Any) -> Any:
    special = set(tokenizer.get_added_vocab())

    def lit(text: str) -> str:
        if text in special:  # a special token cannot be spelled as text: name it by id
            (token,) = tokenizer.encode(text, add_special_tokens=False)
            return f"<[{token}]>"
        return json.dumps(text)

    return lit


def _call_rules(dialect: Dialect, tools: ToolSpecs, ll_tokenizer: llguidance.LLTokenizer, style: dict[str, Any]) -> str:
    """One rule per tool; a schema llguidance cannot compile is loosened to any object.
    Checking each tool's grammar costs ~8 ms for Claude Code's 12 tools, and its tool list is
    the same every turn: kept per tool set. Keys keep their order: llguidance writes an object's
    properties in the schema's order (sorted, an Edit would need new_string before old_string)."""
    forced = style is _FORCED_STYLE
    return _cached_call_rules(dialect, json.dumps(tools), ll_tokenizer, forced)


@functools.lru_cache(maxsize=32)
def _cached_call_rules(dialect: Dialect, tools_json: str, ll_tokenizer: llguidance.LLTokenizer, forced: bool) -> str:
    return _build_call_rules(dialect, json.loads(tools_json), ll_tokenizer, _FORCED_STYLE if forced else _CHOSEN_STYLE)


def _build_call_rules(
    dialect: Dialect, tools: ToolSpecs, ll_tokenizer: llguidance.LLTokenizer, style: dict[str, Any]
) -> str:
    assert dialect.call_rule is not None
    rules = []
    for i, tool in enumerate(tools):
        function = tool["function"]
        rule = dialect.call_rule(i, function["name"], function.get("parameters") or {}, style)
        error = llguidance.LLMatcher.validate_grammar(
            llguidance.LLMatcher.grammar_from_lark(f"start: call{i}\n{rule}"), ll_tokenizer
        )
        if error and not error.startswith("WARNING"):
            # llguidance's error quotes the schema (a `pattern`, say): name the tool, never the text.
            log.warning(
                "tool_schema_not_constrained",
                tool_index=i,
                tool=function["name"][:64],
                cause="a regex `pattern`" if "regex" in error else "the schema",
            )
            rule = dialect.call_rule(i, function["name"], {"type": "object"}, style)
        rules.append(rule)
    return "".join(rules)


def make_tool_constraint(
    tokenizer: Any,
    dialect: Dialect,
    tools: ToolSpecs,
    *,
    forced: bool,
    single: bool,
    prompt_tokens: int,
    thinking_open: bool = False,
) -> ToolConstraint | None:
    """The processor for one request, or None when the dialect's calls are not JSON."""
    if dialect.grammar is None or dialect.call_rule is None or not tools:
        return None
    ll_tokenizer = grammar_tokenizer(tokenizer)
    call_rule = "call: " + " | ".join(f"call{i}" for i in range(len(tools))) + "\n"
    call_rule += _call_rules(dialect, tools, ll_tokenizer, _FORCED_STYLE if forced else _CHOSEN_STYLE)
    calls = dialect.grammar("call", _literal(tokenizer))
    # A forced answer is one call: a weak model asked to choose between another call and
    # stopping may go on calling (seen with random weights); the next turn can call again.
    forced_grammar = f"start: {calls.single}\n{call_rule}" if forced else None
    after_start = f"start: {calls.after_start}\n{call_rule}" if calls.after_start and not forced else None
    if forced_grammar is None and after_start is None:
        return None
    trigger = dialect.start.encode("utf-8")
    return ToolConstraint(
        ll_tokenizer,
        forced_grammar=forced_grammar,
        after_start=after_start,
        trigger=trigger,
        single=single,
        prompt_tokens=prompt_tokens,
        eos=sorted(tokenizer.eos_token_ids),
        thinking=(tokenizer.think_start.encode(), tokenizer.think_end.encode()) if tokenizer.has_thinking else None,
        thinking_open=thinking_open,
    )


def one_call(tokenizer: Any, dialect: Dialect, tools: ToolSpecs) -> tuple[str, str] | None:
    """Lark for one call of an offered tool, as (expression, the rules it uses), written the
    forced way; None when the dialect's calls are not JSON. A structured answer's alternative."""
    if dialect.grammar is None or dialect.call_rule is None or not tools:
        return None
    rules = "call: " + " | ".join(f"call{i}" for i in range(len(tools))) + "\n"
    rules += _call_rules(dialect, tools, grammar_tokenizer(tokenizer), _FORCED_STYLE)
    return dialect.grammar("call", _literal(tokenizer)).single, rules


class ToolConstraint(GrammarProcessor):
    """The grammar for one sequence: from the first token (forced), or from a call's start
    marker to its end (watch → call → watch), never inside the model's thinking."""

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
        thinking: tuple[bytes, bytes] | None = None,
        thinking_open: bool = False,
    ) -> None:
        super().__init__(prompt_tokens, ll_tokenizer)
        self.forced_grammar = forced_grammar
        self.after_start = after_start
        self.trigger = trigger
        self.single = single
        self.eos = eos
        self.thinking = thinking
        self.thinking_open = thinking_open
        self._opener: tuple[mx.array, mx.array] | tuple[()] | None = None
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.tail = b""  # the end of the output, to spot markers
        self.thinking_now = self.thinking_open
        self.matcher = self._matcher(self.forced_grammar) if self.forced_grammar else None
        self.matched, self.closed = 0, None
        # watch | call | forced | end | free
        self.mode = "forced" if self.matcher else "free" if self.forced_grammar else "watch"

    def _matcher(self, grammar: str) -> llguidance.LLMatcher | None:
        """A matcher for the grammar, or None (logged) when llguidance could not build one."""
        matcher = llguidance.LLMatcher(self.ll_tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0)
        if matcher.is_error():
            log.warning("tool_constraint_lost", error=matcher.get_error()[:200])
            return None
        return matcher

    def _openers(self, vocab: int) -> tuple[mx.array, mx.array] | None:
        """The tokens that are a whole start marker, and what may follow one (computed once)."""
        if self._opener is None:
            ids = marker_tokens(self.ll_tokenizer, self.trigger)
            if not ids:
                self._opener = ()
            else:
                assert self.after_start is not None
                matcher = self._matcher(self.after_start)
                if matcher is None:
                    self._opener = ()
                    return None
                bits = np.frombuffer(matcher.compute_bitmask(), dtype=np.int32)
                self._opener = (mx.array(ids), allowed(bits, vocab))
        return self._opener or None

    def checkpoint(self) -> Any:
        return self.mode, self.tail, self.thinking_now, self.matcher, self.matched, self.closed

    def restore(self, state: Any) -> bool:
        if not self.rolled_back(state[3], state[4]):
            return False
        self.mode, self.tail, self.thinking_now, self.matcher, self.matched, self.closed = state
        return True

    def valid_prefix(self, drafts: list[int]) -> int:
        if self.mode == "watch" and self.after_start is not None:
            return self.drafts_through(self.tail, self.trigger, drafts)  # up to a call's start marker
        return super().valid_prefix(drafts)

    def consume(self, token: int) -> None:
        super().consume(token)
        if self.mode in ("forced", "call"):
            assert self.matcher is not None
            if not self.matcher.consume_token(token) or self.matcher.is_error():
                log.warning("tool_constraint_lost", error=self.matcher.get_error()[:200])
                self.mode, self.matcher = "free", None
                return
            self.matched += 1
            if self.mode == "call" and self.matcher.is_stopped():
                self.closed = (self.matcher, self.matched)
                self.mode, self.matcher, self.tail = ("end" if self.single else "watch"), None, b""
            return
        if self.mode != "watch":
            return
        self.tail = (self.tail + self.ll_tokenizer.decode_bytes([token]))[-64:]
        if self.thinking is not None:
            start, end = self.thinking
            if self.thinking_now and end in self.tail:
                self.thinking_now, self.tail = False, self.tail[self.tail.find(end) + len(end) :]
            elif not self.thinking_now and start in self.tail:
                self.thinking_now, self.tail = True, b""
            if self.thinking_now:
                return
        at = self.tail.find(self.trigger)
        if at < 0 or self.after_start is None:
            return
        # The call opened: constrain the rest of it. Bytes the marker's token carried past the
        # marker are fed to the grammar as tokens of their own.
        extra = self.tail[at + len(self.trigger) :]
        self.matcher, self.matched = self._matcher(self.after_start), 0
        self.mode = "call" if self.matcher else "free"
        if self.matcher and extra:
            pieces = self.ll_tokenizer.tokenize_bytes(extra)
            self.matched = self.matcher.try_consume_tokens(pieces)
            if self.matched < len(pieces):
                log.warning("tool_constraint_lost", error="the call's first token ran past the marker")
                self.mode, self.matcher = "free", None

    def needs_every_token(self) -> bool:
        if self.mode in ("forced", "call"):
            return True
        # Watching: the newest token's value is needed only if it may finish a marker that the
        # text already began; a marker written in one token is caught on the device (mask()).
        return self._watching() and held_prefix(self.tail, self.trigger) > 0

    def _watching(self) -> bool:
        return self.mode == "watch" and self.after_start is not None and not self.thinking_now

    def mask(self, logits: mx.array, tokens: mx.array) -> mx.array:
        if self._watching():
            # If the newest token is a whole start marker, the next one is the call's first.
            opener = self._openers(logits.shape[-1])
            if opener is None:
                return logits
            ids, first = opener
            is_marker = mx.any(tokens.reshape(-1)[-1] == ids)
            return mx.where(is_marker, masked(logits, first), logits)
        if self.mode in ("watch", "free"):
            return logits
        if self.mode == "end":
            return only_tokens(logits, self.eos)
        return self.grammar_mask(logits)

    def grammar(self) -> llguidance.LLMatcher | None:
        return self.matcher if self.mode in ("forced", "call") else None
