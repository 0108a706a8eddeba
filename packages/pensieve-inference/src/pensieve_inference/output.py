"""One sequence's way out: tokens in, events out (text through the thinking splitter, stop
sequences and the tool-call stream), and the stop reason when it ends. Worker thread only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from pensieve_claude_types import StopReason
from pensieve_core import Finished, TextDelta

from .jobs import GenerationJob
from .stops import StopSequenceMatcher

log = structlog.get_logger("pensieve.inference")

# Tokens a newcomer may take to show its first text while the prefill lane waits for it.
FIRST_TEXT_PATIENCE = 4


def processors_of(job: GenerationJob) -> list[Any]:
    return [p for p in (job.thinking_budget, job.constraint) if p is not None]


@dataclass
class SequenceOutput:
    job: GenerationJob
    detokenizer: Any
    stops: StopSequenceMatcher
    output_tokens: int = 0
    # Output tokens handed out so far: with the prompt, where a retried sequence resumes.
    generated: list[int] = field(default_factory=list)
    answered: bool = False  # its first text has gone out
    started: float = field(default_factory=time.perf_counter)

    @property
    def awaits_first_text(self) -> bool:
        """A newcomer the lane waits for (a few tokens at most: some tokens show no text)."""
        return not self.answered and self.output_tokens < FIRST_TEXT_PATIENCE

    def take(self, token: int, finish: str | None) -> bool:
        """One generated token, from the batch or the solo loop: its text goes out; True when
        the sequence ends here early (a stop sequence, the one allowed tool call)."""
        job = self.job
        self.output_tokens += 1
        self.generated.append(token)
        for processor in processors_of(job):
            processor.seen.append(token)
        if finish != "stop":  # an end-of-turn token has no text
            self.detokenizer.add_token(token)
        if finish is not None:
            self.detokenizer.finalize()
        segment = self.detokenizer.last_segment
        self.answered = self.answered or bool(segment)
        self._emit_text(self.stops.feed(self._answer_text(segment)))
        calls = job.tool_calls
        called_once = calls is not None and calls.single and calls.calls > 0
        return finish is None and (self.stops.matched is not None or called_once)

    def _answer_text(self, text: str) -> str:
        """The answer part of new output text; the thinking part goes out as thinking events."""
        thinking = self.job.thinking
        if thinking is None or (thinking.state == "answer" and not thinking.buffer):
            return text
        events, answer = thinking.feed(text)
        for event in events:
            self.job.emit(event)
        return answer

    def _finish_thinking(self) -> str:
        if self.job.thinking is None:
            return ""
        events, answer = self.job.thinking.finish()
        for event in events:
            self.job.emit(event)
        return answer

    def _emit_text(self, text: str) -> None:
        """Visible text, through the tool-call splitter if the request offered tools."""
        if not text:
            return
        if self.job.tool_calls is None:
            self.job.emit(TextDelta(text=text))
            return
        for event in self.job.tool_calls.feed(text):
            self.job.emit(event)

    def finish(self, finish: str) -> None:
        """Flush what was held back and say why the answer ended."""
        job, stops = self.job, self.stops
        if stops.matched is None:
            self._emit_text(stops.feed(self._finish_thinking()) + stops.flush())
        if job.tool_calls is not None:
            for event in job.tool_calls.finish():
                job.emit(event)
        called = job.tool_calls is not None and job.tool_calls.calls > 0
        sequence = None
        reason: StopReason
        if stops.matched is not None:
            reason, sequence = "stop_sequence", stops.matched
        elif finish == "length":
            reason = job.exhausted_reason
        else:
            reason = "tool_use" if called else "end_turn"
        if reason == "end_turn" and finish == "stop" and job.answered is not None:
            job.answered(self.generated[:-1])  # without the end-of-turn token, which has no text
        log.info(
            "generation",
            request_id=job.request_id,
            prompt_tokens=len(job.prompt),
            output_tokens=self.output_tokens,
            stop_reason=reason,
            seconds=round(time.perf_counter() - self.started, 3),
        )
        thinking_tokens = job.thinking_budget.spent if job.thinking_budget is not None else None
        job.emit(
            Finished(
                stop_reason=reason,
                output_tokens=self.output_tokens,
                stop_sequence=sequence,
                thinking_tokens=thinking_tokens,
            )
        )
