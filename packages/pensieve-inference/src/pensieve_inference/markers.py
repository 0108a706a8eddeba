"""Holding back output that may be the start of a marker (a stop sequence, a tool call's
opening tag): one rule for text and bytes, shared by every reader that waits for one."""

from __future__ import annotations

from typing import TypeVar

Text = TypeVar("Text", str, bytes)


def held_prefix(buffer: Text, marker: Text) -> int:
    """Length of the longest end of `buffer` that is a proper, non-empty start of `marker`."""
    for size in range(min(len(marker) - 1, len(buffer)), 0, -1):
        if buffer.endswith(marker[:size]):
            return size
    return 0
