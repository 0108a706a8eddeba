"""A nesting-depth check on the raw bytes, before msgspec decodes them (msgspec and the chat
templates recurse: a deep body would be a RecursionError, a 500).

The check runs at C speed: escapes and strings are dropped, the rest reduced to brackets, then
each pass that removes the `[]` pairs peels one level off every branch. When few pairs are
left, the runs of brackets are counted instead. Only a body found too deep is walked token by
token, to name the JSON path."""

from __future__ import annotations

import re
from itertools import accumulate
from operator import sub

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_QUOTED = re.compile(rb'"[^"]*"')
_RUNS = re.compile(rb"\[+|\]+")
_KEEP = bytes(b for b in range(256) if b not in b'[]{}"')
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
# Keys (a string before a colon) name the path; other strings are skipped whole.
_TOKENS = re.compile(rb"(" + _STRING + rb")\s*:|" + _STRING + rb"|[\[\]{},]", re.DOTALL)
# Runs are listed in memory (8 bytes each): peel levels until there are at most this many.
_FEW_PAIRS = 2_000_000
# The walk that names the path stops here ("at `$`"): describing a hostile body stays cheap.
_MAX_WALKED_TOKENS = 300_000


def deeper_than(body: bytes, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels anywhere in a JSON body."""
    brackets = _brackets(body)
    if b"[" * (limit + 1) in brackets:
        return True
    for peeled in range(limit + 1):
        if brackets.count(b"[]") <= _FEW_PAIRS:
            return _deepest_run(brackets) + peeled > limit
        brackets = brackets.replace(b"[]", b"")
    return True


def _brackets(body: bytes) -> bytes:
    """The body's brackets outside strings, `{}` spelt `[]`. Escaped backslashes and quotes
    go first; then every quote left opens or closes a string."""
    marks = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _KEEP).replace(b'""', b"")
    if b'"' in marks:  # strings that hold brackets
        marks = _QUOTED.sub(b"", marks)
    return marks.translate(_AS_SQUARE)


def _deepest_run(brackets: bytes) -> int:
    """Runs of `[` and of `]` alternate: the depth peaks at the end of each run of `[`."""
    sizes = list(map(len, _RUNS.findall(brackets)))
    if not sizes or brackets[0] != 0x5B:
        return 0  # not JSON: the decoder reports that
    opened = accumulate(sizes[0::2])
    closed = accumulate(sizes[1::2], initial=0)
    deepest: int = max(map(sub, opened, closed))
    return deepest


def path_past(body: bytes, limit: int) -> str:
    """The JSON path (msgspec's spelling) of the first container nested past `limit`."""
    # One entry per open container: its kind and its key or index so far.
    stack: list[list[object]] = []
    for count, token in enumerate(_TOKENS.finditer(body)):
        if count > _MAX_WALKED_TOKENS:
            break
        text = token.group(0)
        if token.group(1) is not None and stack:
            stack[-1][1] = token.group(1)[1:-1].decode("utf-8", "replace")
        elif text in (b"{", b"["):
            if len(stack) == limit:
                return "$" + "".join(f"[{at}]" if kind == b"[" else f".{at}" for kind, at in stack)
            stack.append([text, 0 if text == b"[" else ""])
        elif text in (b"}", b"]") and stack:
            stack.pop()
        elif text == b"," and stack and stack[-1][0] == b"[":
            stack[-1][1] = int(stack[-1][1]) + 1  # type: ignore[call-overload]
    return "$"
