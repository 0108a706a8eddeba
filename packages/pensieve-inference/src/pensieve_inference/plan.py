"""From a request to what the worker runs: the rendered prompt and its message boundaries, the
output budget and the stop reason when it is spent, the sampling values, the logits
processors (tool constraint or structured answer, thinking budget) and the readers of the
output (thinking splitter, tool-call stream). One call, on a render thread: everything here
is request work, none of it MLX work."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from mlx_lm.tokenizer_utils import TokenizerWrapper

from pensieve_claude_types import StopReason, ToolChoiceAny, ToolChoiceAuto, ToolChoiceTool
from pensieve_core import GenerationRequest, Phases
from pensieve_core.errors import InvalidRequestError, PromptTooLongError

from .constrained import ToolConstraint, make_tool_constraint, one_call
from .processors import SequenceProcessor
from .prompt import PromptRenderer, RenderedPrompt, function_spec, offered_tools
from .sampling import sampler_args
from .structured import FormatConstraint, check_schema, make_format_constraint
from .thinking import ThinkingBudget, ThinkingPlan, ThinkingSplitter, thinking_plan
from .tool_stream import ToolCallStream


@dataclass(frozen=True)
class ModelLimits:
    """What a plan needs to know of the model beyond its tokenizer and template."""

    context_length: int
    vocab_size: int
    max_output_tokens: int | None = None


@dataclass
class GenerationPlan:
    rendered: RenderedPrompt
    max_tokens: int
    exhausted_reason: StopReason
    sampler_args: dict[str, Any]
    tool_calls: ToolCallStream | None
    constraint: SequenceProcessor | None  # a ToolConstraint or a FormatConstraint
    thinking: ThinkingSplitter | None
    thinking_budget: ThinkingBudget | None
    # Render, tokenize and grammar times; the worker adds admission and cache lookup.
    phases: Phases = field(default_factory=Phases)


def output_budget(requested: int, prompt_tokens: int, limits: ModelLimits) -> tuple[int, StopReason]:
    """What the answer may use, and the stop reason when it is used up: the request's
    max_tokens, capped by the server's limit, and by what the context leaves after the
    prompt (then `model_context_window_exceeded`, as the API says)."""
    budget = min(requested, limits.max_output_tokens or requested)
    room = limits.context_length - prompt_tokens
    return (room, "model_context_window_exceeded") if room < budget else (budget, "max_tokens")


def _thinking(
    tokenizer: TokenizerWrapper, plan: ThinkingPlan, rendered: RenderedPrompt
) -> tuple[ThinkingSplitter | None, ThinkingBudget | None]:
    if not tokenizer.has_thinking:
        return None, None
    splitter = ThinkingSplitter(tokenizer.think_start, tokenizer.think_end, is_open=rendered.thinking_open)
    budget = None
    if plan.enabled and plan.budget is not None:
        budget = ThinkingBudget(
            budget=plan.budget,
            start=list(tokenizer.think_start_tokens),
            end=list(tokenizer.think_end_tokens),
            is_open=rendered.thinking_open,
            prompt_tokens=len(rendered.tokens),
        )
    return splitter, budget


def _tools(
    request: GenerationRequest, renderer: PromptRenderer, rendered: RenderedPrompt
) -> tuple[ToolCallStream | None, ToolConstraint | None]:
    """The reader for the model's calls, and the processor that keeps them valid: every
    answer a call under tool_choice any/tool, a call's input under auto once it opens."""
    tools = offered_tools(request)
    if not tools:
        return None, None
    choice = request.tool_choice
    single = isinstance(choice, (ToolChoiceAuto, ToolChoiceAny, ToolChoiceTool)) and choice.disable_parallel_tool_use
    for i, tool in enumerate(request.tools or []):
        if tool.strict and tool.input_schema is not None:  # strict: held to its schema, or a 400
            check_schema(tool.input_schema, f"tools[{i}].input_schema")
    specs = [function_spec(t) for t in tools]
    stream = ToolCallStream(renderer.dialect, specs, single=single)
    forced = specs
    if isinstance(choice, ToolChoiceTool):
        forced = [s for s in specs if s["function"]["name"] == choice.name]
        if not forced:
            raise InvalidRequestError(f"tool_choice: no tool named {choice.name!r} among the request's tools")
    constraint = make_tool_constraint(
        renderer.tokenizer,
        renderer.dialect,
        forced,
        forced=isinstance(choice, (ToolChoiceAny, ToolChoiceTool)),
        single=single,
        prompt_tokens=len(rendered.tokens),
        thinking_open=rendered.thinking_open,
    )
    return stream, constraint


def _structured(
    request: GenerationRequest, renderer: PromptRenderer, rendered: RenderedPrompt
) -> FormatConstraint | None:
    """The processor for output_config.format: the text answer, or one call under auto. A
    forced call is the whole answer (None), but the schema must still be one we can enforce."""
    assert request.output_schema is not None
    if isinstance(request.tool_choice, (ToolChoiceAny, ToolChoiceTool)):
        check_schema(request.output_schema, "output_config.format.schema")
        return None
    call = one_call(renderer.tokenizer, renderer.dialect, [function_spec(t) for t in offered_tools(request)])
    return make_format_constraint(
        renderer.tokenizer,
        request.output_schema,
        prompt_tokens=len(rendered.tokens),
        thinking_open=rendered.thinking_open,
        call=call,
    )


def make_plan(request: GenerationRequest, renderer: PromptRenderer, limits: ModelLimits) -> GenerationPlan:
    """Everything a generation needs before the worker takes it; raises the request's 4xx."""
    args = sampler_args(request, limits.vocab_size)
    thinking = thinking_plan(request)
    rendered = renderer.prompt(request)
    if len(rendered.tokens) >= limits.context_length:
        raise PromptTooLongError(len(rendered.tokens), limits.context_length)
    constraint: ToolConstraint | FormatConstraint | None
    started = time.perf_counter()
    tool_calls, constraint = _tools(request, renderer, rendered)
    if request.output_schema is not None:
        constraint = _structured(request, renderer, rendered) or constraint
    grammar_ms = (time.perf_counter() - started) * 1000
    splitter, budget = _thinking(renderer.tokenizer, thinking, rendered)
    max_tokens, exhausted = output_budget(request.max_tokens, len(rendered.tokens), limits)
    return GenerationPlan(
        rendered=rendered,
        max_tokens=max_tokens,
        exhausted_reason=exhausted,
        sampler_args=args,
        tool_calls=tool_calls,
        constraint=constraint,
        thinking=splitter,
        thinking_budget=budget,
        phases=msgspec.structs.replace(rendered.phases, grammar=grammar_ms),
    )
