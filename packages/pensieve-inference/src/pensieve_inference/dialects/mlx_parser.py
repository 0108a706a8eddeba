"""Any other family mlx-lm recognises (Gemma, GLM, Kimi, MiniMax, LongCat, ...): its markers
and its parser, applied to the whole call once the end marker arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Dialect, MalformedCall, ReaderEvent, ToolSpecs, parsed_calls


class WholeCallReader:
    def __init__(self, parser: Callable[[str, Any], Any], tools: ToolSpecs) -> None:
        self.parser = parser
        self.tools = tools
        self.text = ""

    def feed(self, text: str) -> list[ReaderEvent]:
        self.text += text
        return []

    def close(self) -> list[ReaderEvent]:
        try:
            parsed = self.parser(self.text, self.tools)
        except Exception as exc:
            raise MalformedCall(f"{type(exc).__name__}: {exc}") from exc
        return parsed_calls(parsed)


def dialect(name: str, start: str, end: str, parser: Callable[[str, Any], Any]) -> Dialect:
    return Dialect(
        name=f"mlx_lm:{name}", start=start, end=end or "", make_reader=lambda tools: WholeCallReader(parser, tools)
    )
