"""Tool-call dialects: one module per family of chat templates, and the registry that picks
one from the model's template (falling back to what mlx-lm inferred, then to the generic
convention for templates that know no tools)."""

from __future__ import annotations

from typing import Any, TypeGuard

from . import generic, hermes, llama3, mistral, mlx_parser, pythonic, qwen3_coder
from .base import Begin, CallReader, Dialect, End, InputDelta, Loose, MalformedCall, ToolSpecs

GENERIC = generic.DIALECT

# By name, for configuration and tests.
DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        hermes.DIALECT,
        qwen3_coder.DIALECT,
        mistral.DIALECT,
        llama3.DIALECT,
        pythonic.TAGGED,
        pythonic.BARE,
        generic.DIALECT,
    )
}


def template_knows_tools(template: Any) -> TypeGuard[str]:
    return isinstance(template, str) and "tools" in template


def _from_template(template: str) -> Dialect | None:
    if "<tool_call>\n<function=" in template or "<tool_call>\\n<function=" in template:
        return qwen3_coder.DIALECT
    if "[TOOL_CALLS]" in template:
        return mistral.DIALECT
    if "<|tool_call_start|>" in template:
        return pythonic.TAGGED
    if "[func_name1(" in template:  # Llama 3.2 / 4 describe their pythonic form this way
        return pythonic.BARE
    if "<|python_tag|>" in template or ('"parameters"' in template and "<|eot_id|>" in template):
        return llama3.DIALECT
    if "<tool_call>" in template:
        return hermes.DIALECT
    return None


def detect(tokenizer: Any) -> Dialect:
    """The dialect the model writes calls in. Templates that take no tools get the generic
    convention (tools described in the system text)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template_knows_tools(template):
        return GENERIC
    found = _from_template(template)
    if found is not None:
        return found
    if getattr(tokenizer, "has_tool_calling", False):
        return mlx_parser.dialect(
            getattr(tokenizer.tool_parser, "__module__", "parser").rsplit(".", 1)[-1],
            tokenizer.tool_call_start,
            tokenizer.tool_call_end,
            tokenizer.tool_parser,
        )
    return GENERIC


__all__ = [
    "DIALECTS",
    "GENERIC",
    "Begin",
    "CallReader",
    "Dialect",
    "End",
    "InputDelta",
    "Loose",
    "MalformedCall",
    "ToolSpecs",
    "detect",
    "template_knows_tools",
]
