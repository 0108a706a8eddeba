"""Structured outputs (`output_config.format`): the text answer is one JSON value valid
against the request's schema (or, under tool_choice auto, one valid call), after any thinking,
then the turn ends. The same llguidance machinery as forced tool calls; a schema it cannot
compile is the client's 400, never a silently free answer."""

from __future__ import annotations

import json
from typing import Any

import llguidance
import mlx.core as mx
import structlog

from pensieve_core.errors import InvalidRequestError

from .constrained import grammar_tokenizer
from .dialects.grammar import closed, json_value
from .masks import GrammarProcessor

log = structlog.get_logger("pensieve.tools")

# Compact, as a template prints JSON; not lenient: an unsupported keyword must be an error.
_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def check_schema(schema: dict[str, Any], where: str) -> None:
    """Raise the 400 when llguidance cannot hold output to `schema` (`where`: its JSON path)."""
    error = llguidance.LLMatcher.validate_grammar(
        llguidance.LLMatcher.grammar_from_json_schema(json.dumps({**closed(schema), "x-guidance": _STYLE})), None
    )
    if error and not error.startswith("WARNING"):
        if error.startswith("Unimplemented keys: "):
            error = f"unsupported JSON Schema keyword {error.removeprefix('Unimplemented keys: ')}"
        raise InvalidRequestError(f"{where}: this schema cannot be enforced: {error[:300]} - at `$.{where}`")


def make_format_constraint(
    tokenizer: Any,
    schema: dict[str, Any],
    *,
    prompt_tokens: int,
    thinking_open: bool,
    call: tuple[str, str] | None = None,
) -> FormatConstraint:
    """The processor for one request's structured answer; raises the 400 for a bad schema.
    `call` (from `constrained.one_call`): under tool_choice auto the answer may be one call
    instead."""
    check_schema(schema, "output_config.format.schema")
    answer = json_value(schema, _STYLE)
    grammar = f"start: {answer}\n" if call is None else f"start: answer | {call[0]}\nanswer: {answer}\n{call[1]}"
    think_end = tokenizer.think_end.encode() if tokenizer.has_thinking and thinking_open else None
    return FormatConstraint(grammar_tokenizer(tokenizer), grammar, prompt_tokens=prompt_tokens, think_end=think_end)


class FormatConstraint(GrammarProcessor):
    """Free while the model thinks (until `think_end`, when thinking was open), then only
    tokens that keep the answer a prefix of a valid value; once it is whole, only EOS
    (llguidance's mask when the grammar is complete)."""

    def __init__(
        self, ll_tokenizer: llguidance.LLTokenizer, grammar: str, *, prompt_tokens: int, think_end: bytes | None
    ) -> None:
        super().__init__(prompt_tokens, ll_tokenizer)
        self.lark = grammar
        self.think_end = think_end
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.tail = b""  # while thinking: the output's end, to spot the end marker
        self.matcher, self.matched = None, 0
        self.mode = "thinking" if self.think_end else "answer"
        if self.mode == "answer":
            self.matcher = self._matcher()

    def _matcher(self) -> llguidance.LLMatcher:
        grammar = llguidance.LLMatcher.grammar_from_lark(self.lark)
        return llguidance.LLMatcher(self.ll_tokenizer, grammar, log_level=0)

    def checkpoint(self) -> Any:
        return self.mode, self.tail, self.matcher, self.matched

    def restore(self, state: Any) -> bool:
        if not self.rolled_back(state[2], state[3]):
            return False
        self.mode, self.tail, self.matcher, self.matched = state
        return True

    def valid_prefix(self, drafts: list[int]) -> int:
        if self.mode == "thinking" and self.think_end is not None:
            return self.drafts_through(self.tail, self.think_end, drafts)  # up to the thinking's end
        return super().valid_prefix(drafts)

    def consume(self, token: int) -> None:
        super().consume(token)
        if self.mode == "answer":
            assert self.matcher is not None
            if not self.matcher.consume_token(token) or self.matcher.is_error():
                log.warning("format_constraint_lost", error=self.matcher.get_error()[:200])
                self.mode, self.matcher = "free", None
            else:
                self.matched += 1
        elif self.mode == "thinking":
            assert self.think_end is not None
            self.tail = (self.tail + self.ll_tokenizer.decode_bytes([token]))[-64:]
            at = self.tail.find(self.think_end)
            if at >= 0:
                self.mode, self.matcher = "answer", self._matcher()
                # Whitespace after the marker is the template's; anything else must fit the grammar.
                extra = self.tail[at + len(self.think_end) :].lstrip()
                pieces = self.ll_tokenizer.tokenize_bytes(extra) if extra else []
                self.matched = self.matcher.try_consume_tokens(pieces)
                if self.matched < len(pieces):
                    log.warning("format_constraint_lost", error="the thinking's last token ran into the answer")
                    self.mode, self.matcher = "free", None

    def mask(self, logits: mx.array, tokens: mx.array) -> mx.array:
        return logits if self.mode != "answer" else self.grammar_mask(logits)

    def grammar(self) -> llguidance.LLMatcher | None:
        return self.matcher if self.mode == "answer" else None
