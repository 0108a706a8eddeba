"""Reasoning models (<think>-style templates: Qwen3, DeepSeek-R1 distills): their thinking is
split from the answer into thinking events, and a token budget closes it when spent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from pensieve_claude_types import ThinkingEnabled
from pensieve_core import GenerationEvent, GenerationRequest, ThinkingDelta, ThinkingEnd

from .effort import adaptive_budget, thinks
from .markers import held_prefix
from .processors import SequenceProcessor, only_tokens


@dataclass(frozen=True)
class ThinkingPlan:
    """What a request asks of a thinking model: think or not, and for how many tokens."""

    enabled: bool
    budget: int | None = None


def thinking_plan(request: GenerationRequest) -> ThinkingPlan:
    """Thinking is off unless enabled (or adaptive, as effort says). The API's rules on the
    budget and on forced tool calls are the wire's to check (pensieve-api-models)."""
    config = request.thinking
    if isinstance(config, ThinkingEnabled):
        return ThinkingPlan(enabled=True, budget=config.budget_tokens)
    return ThinkingPlan(enabled=thinks(request), budget=adaptive_budget(request))


def template_switches_thinking(tokenizer: Any) -> bool:
    """Whether the chat template reads `enable_thinking` (Qwen3 style) and so can turn it off."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "enable_thinking" in template


def opens_thinking(prompt_text: str, tokenizer: Any) -> bool:
    """The template opened the thinking section itself (R1 distills end the prompt with it)."""
    return bool(tokenizer.has_thinking) and prompt_text.rstrip().endswith(tokenizer.think_start)


class ThinkingSplitter:
    """Output text in, thinking events and answer text out. Thinking is open from the start
    when the prompt opened it, or when the answer begins with the start marker."""

    def __init__(self, start: str, end: str, *, is_open: bool) -> None:
        self.start, self.end = start, end
        self.state = "thinking" if is_open else "maybe"  # maybe | thinking | answer
        self.buffer = ""
        self.after_end = False  # drop the blank line after the end marker
        self.tokens = 0

    def feed(self, text: str) -> tuple[list[GenerationEvent], str]:
        """(thinking events, answer text)."""
        self.buffer += text
        events: list[GenerationEvent] = []
        if self.state == "maybe":
            lead = self.buffer.lstrip()
            if self.start.startswith(lead):
                return events, ""  # might still become the start marker
            if lead.startswith(self.start):
                self.state, self.buffer = "thinking", lead[len(self.start) :].lstrip("\n")
            else:
                self.state = "answer"
        if self.state == "thinking":
            index = self.buffer.find(self.end)
            if index < 0:
                keep = held_prefix(self.buffer, self.end)
                thought, self.buffer = self.buffer[: len(self.buffer) - keep], self.buffer[len(self.buffer) - keep :]
                if thought:
                    events.append(ThinkingDelta(thinking=thought))
                return events, ""
            thought, self.buffer = self.buffer[:index], self.buffer[index + len(self.end) :]
            if thought:
                events.append(ThinkingDelta(thinking=thought))
            events.append(ThinkingEnd())
            self.state, self.after_end = "answer", True
        answer, self.buffer = self.buffer, ""
        if self.after_end:
            answer = answer.lstrip("\n")
            self.after_end = not answer
        return events, answer

    def finish(self) -> tuple[list[GenerationEvent], str]:
        buffer, self.buffer = self.buffer, ""
        if self.state == "thinking":  # cut off while thinking: the block still closes
            self.state = "answer"
            events: list[GenerationEvent] = [ThinkingDelta(thinking=buffer)] if buffer else []
            return [*events, ThinkingEnd()], ""
        return [], buffer if not self.after_end else buffer.lstrip("\n")


class ThinkingBudget(SequenceProcessor):
    """Counts the tokens written while thinking; at the budget, writes the end marker."""

    def __init__(self, *, budget: int, start: list[int], end: list[int], is_open: bool, prompt_tokens: int) -> None:
        super().__init__(prompt_tokens)
        self.budget, self.start, self.end, self.is_open = budget, start, end, is_open
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.state = "thinking" if self.is_open else "before"  # before | thinking | done
        self.spent = 0  # thinking tokens so far
        self.forcing = 0  # end-marker tokens written so far once the budget ran out

    def checkpoint(self) -> Any:
        return self.state, self.spent, self.forcing

    def restore(self, state: Any) -> bool:
        self.state, self.spent, self.forcing = state
        return True

    def valid_prefix(self, drafts: list[int]) -> int:
        # Near the budget the end marker is forced: drafts stop where that could begin.
        if self.state == "done":
            return len(drafts)
        if self.forcing:
            rest = self.end[self.forcing - 1 :]
            n = 0
            while n < min(len(drafts), len(rest)) and drafts[n] == rest[n]:
                n += 1
            return n
        return min(len(drafts), max(0, self.budget - self.spent))

    def consume(self, token: int) -> None:
        super().consume(token)
        recent = self.generated[-len(self.end) :]
        if self.state == "before":
            if self.generated[-len(self.start) :] == self.start:
                self.state = "thinking"
            elif len(self.generated) > len(self.start):
                self.state = "done"  # the answer did not open with thinking
        elif self.state == "thinking":
            if self.forcing:
                self.forcing += 1
            if recent == self.end:
                self.state = "done"
            elif not self.forcing:
                self.spent += 1
                if self.spent >= self.budget:
                    self.forcing = 1

    def needs_every_token(self) -> bool:
        # Counting needs no values; only whether thinking began, and, near the budget, whether
        # the newest token already ended it (a second end marker would then go in the answer).
        return self.state == "before" or (self.state == "thinking" and self.spent + 1 >= self.budget)

    def mask(self, logits: mx.array, tokens: mx.array) -> mx.array:
        if self.state == "thinking" and self.forcing:
            return only_tokens(logits, [self.end[self.forcing - 1]])
        return logits
