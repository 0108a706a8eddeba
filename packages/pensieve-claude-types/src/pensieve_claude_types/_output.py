"""What the answer must look like and how hard the model works at it: `output_config`
(structured outputs, effort), top-level and on a message."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# The API's levels, ascending; "high" is what omitting it means.
Effort = Literal["low", "medium", "high", "xhigh", "max"]


class JsonOutputFormat(msgspec.Struct, tag_field="type", tag="json_schema"):
    """The text answer is one JSON value valid against `schema`."""

    schema: dict[str, Any]


class OutputConfig(msgspec.Struct, omit_defaults=True):
    """The request's `output_config`."""

    format: JsonOutputFormat | None = None
    effort: Effort | None = None


class MessageOutputConfig(msgspec.Struct, omit_defaults=True):
    """A message's own `output_config` (Claude Code puts one on its system messages): it applies
    from that message on; `format` stays top-level only, as in the API."""

    effort: Effort | None = None
