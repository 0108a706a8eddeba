"""Content blocks: what a request may carry and what a response returns."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ._output import MessageOutputConfig


class CacheControl(msgspec.Struct, omit_defaults=True):
    type: str = "ephemeral"
    ttl: str | None = None


class Base64Source(msgspec.Struct, tag_field="type", tag="base64"):
    media_type: str
    data: str


class UrlSource(msgspec.Struct, tag_field="type", tag="url"):
    url: str


class TextSource(msgspec.Struct, tag_field="type", tag="text"):
    media_type: str
    data: str


class FileSource(msgspec.Struct, tag_field="type", tag="file"):
    file_id: str


class ContentSource(msgspec.Struct, tag_field="type", tag="content"):
    content: Any


MediaSource = Base64Source | UrlSource | TextSource | FileSource | ContentSource


class TextBlockParam(msgspec.Struct, tag_field="type", tag="text", omit_defaults=True):
    text: str
    cache_control: CacheControl | None = None
    citations: list[Any] | None = None


class ImageBlockParam(msgspec.Struct, tag_field="type", tag="image", omit_defaults=True):
    source: MediaSource
    cache_control: CacheControl | None = None


class DocumentBlockParam(msgspec.Struct, tag_field="type", tag="document", omit_defaults=True):
    source: MediaSource
    title: str | None = None
    context: str | None = None
    cache_control: CacheControl | None = None
    citations: Any = None


class ToolReferenceBlockParam(msgspec.Struct, tag_field="type", tag="tool_reference", omit_defaults=True):
    """Names a deferred tool that a tool search loaded (Claude Code sends these in results)."""

    tool_name: str
    cache_control: CacheControl | None = None


class SearchResultBlockParam(msgspec.Struct, tag_field="type", tag="search_result", omit_defaults=True):
    source: str
    title: str
    content: list[TextBlockParam]
    cache_control: CacheControl | None = None
    citations: Any = None


ToolResultContent = (
    TextBlockParam | ImageBlockParam | DocumentBlockParam | ToolReferenceBlockParam | SearchResultBlockParam
)


class ToolUseBlockParam(msgspec.Struct, tag_field="type", tag="tool_use", omit_defaults=True):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlockParam(msgspec.Struct, tag_field="type", tag="tool_result", omit_defaults=True):
    tool_use_id: str
    content: str | list[ToolResultContent] = ""
    is_error: bool = False
    cache_control: CacheControl | None = None


class ThinkingBlockParam(msgspec.Struct, tag_field="type", tag="thinking", omit_defaults=True):
    thinking: str
    signature: str = ""


class RedactedThinkingBlockParam(msgspec.Struct, tag_field="type", tag="redacted_thinking", omit_defaults=True):
    data: str


class ServerToolUseBlockParam(msgspec.Struct, tag_field="type", tag="server_tool_use", omit_defaults=True):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class WebSearchToolResultBlockParam(msgspec.Struct, tag_field="type", tag="web_search_tool_result", omit_defaults=True):
    tool_use_id: str
    content: Any
    cache_control: CacheControl | None = None


ContentBlockParam = (
    TextBlockParam
    | ImageBlockParam
    | DocumentBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam
    | ServerToolUseBlockParam
    | WebSearchToolResultBlockParam
    | SearchResultBlockParam
)


class TextBlock(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ThinkingBlock(msgspec.Struct, tag_field="type", tag="thinking"):
    thinking: str
    signature: str


class RedactedThinkingBlock(msgspec.Struct, tag_field="type", tag="redacted_thinking"):
    data: str


class ToolUseBlock(msgspec.Struct, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = TextBlock | ThinkingBlock | RedactedThinkingBlock | ToolUseBlock

Role = Literal["user", "assistant", "system"]


class MessageParam(msgspec.Struct, omit_defaults=True):
    role: Role
    # Claude Code sends `{"role": "system", "content": [], "output_config": …}` to change effort.
    content: str | list[ContentBlockParam]
    output_config: MessageOutputConfig | None = None
