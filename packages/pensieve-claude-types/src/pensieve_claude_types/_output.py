"""What the answer must look like: `output_config.format` (structured outputs)."""

from __future__ import annotations

from typing import Any

import msgspec


class JsonOutputFormat(msgspec.Struct, tag_field="type", tag="json_schema"):
    """The text answer is one JSON value valid against `schema`."""

    schema: dict[str, Any]


class OutputConfig(msgspec.Struct, omit_defaults=True):
    """`output_config`; its other fields (`effort`) are accepted and read elsewhere."""

    format: JsonOutputFormat | None = None
