"""JSON as a model writes it: followed character by character (so a call's input can stream
while it is being written), closed when it was cut short, and loosely repaired."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

_LITERALS = ("true", "false", "null")
_NUMBER_PREFIX = re.compile(r"-?(0|[1-9]\d*)?(\.\d*)?([eE][+-]?\d*)?")
_WHITESPACE = " \t\r\n"


class JsonScanner:
    """Follows one JSON value as it is written: `error` once the text can no longer be the
    start of a valid value, `done` when the value is complete.

    `clean` is the accepted text (a trailing comma before a closing bracket, which models
    write, is dropped); `clean[:safe]` is the longest part of it that closing brackets and
    quotes alone turn into a valid value: what may stream before the value is complete."""

    def __init__(self) -> None:
        self.stack: list[str] = []  # '{' or '['
        self.expect = "value"  # value | key | colon | comma | first_key | first_value
        self.in_string = False
        self.string_is_key = False
        self.escape = 0  # 1 after a backslash; 5..2 while reading the digits of \uXXXX
        self.scalar = ""  # a number or literal being written
        self.done = False
        self.error = False
        self.clean = ""
        self.safe = 0

    def feed(self, text: str) -> int:
        """Consume text; returns how many characters belong to the value (all of them unless it
        ended or broke inside this text)."""
        for i, ch in enumerate(text):
            if self.done or self.error:
                return i
            if self.scalar and not self._scalar_continues(self.scalar + ch):
                # A number or literal ends at the first character that cannot extend it.
                if not self._end_scalar():
                    self.error = True
                    return i
                if self.done:
                    return i
            if not self._char(ch):
                self.error = True
                return i
            if self.done:
                return i + 1
        return len(text)

    def finish(self) -> None:
        """The text ended: a number running to the end is complete."""
        if self.scalar and not self.error:
            self._end_scalar()

    def _end_scalar(self) -> bool:
        if not self._scalar_complete(self.scalar):
            return False
        self.scalar = ""
        self._value_done()
        return True

    def _char(self, ch: str) -> bool:
        if self.in_string:
            self.clean += ch
            if not self._string_char(ch):
                return False
            if self.in_string and not self.string_is_key and not self.escape:
                self.safe = len(self.clean)  # inside a value: a closing quote makes it whole
            return True
        if self.scalar:
            self.scalar += ch
            self.clean += ch
            return True
        if ch in _WHITESPACE:
            self.clean += ch
            return True
        if self.expect in ("value", "first_value"):
            if ch == "]" and self.stack and self.stack[-1] == "[" and self.expect == "first_value":
                return self._close()
            if ch == "]" and self.expect == "value" and self.stack and self.stack[-1] == "[":
                return self._close(trailing_comma=True)
            return self._start_value(ch)
        if self.expect in ("key", "first_key"):
            if ch == '"':
                self.in_string, self.string_is_key = True, True
                self.clean += ch
                return True
            if ch == "}":
                return self._close(trailing_comma=self.expect == "key")
            return False
        if self.expect == "colon":
            if ch != ":":
                return False
            self.expect = "value"
            self.clean += ch
            return True
        top = self.stack[-1]
        if ch == ",":
            self.expect = "key" if top == "{" else "value"
            self.clean += ch
            return True
        return ch == ("}" if top == "{" else "]") and self._close()

    def _start_value(self, ch: str) -> bool:
        if ch == '"':
            self.in_string, self.string_is_key = True, False
            self.clean += ch
            self.safe = len(self.clean)
            return True
        if ch in "{[":
            self.stack.append(ch)
            self.expect = "first_key" if ch == "{" else "first_value"
            self.clean += ch
            self.safe = len(self.clean)
            return True
        if self._scalar_continues(ch):
            self.scalar = ch
            self.clean += ch
            return True
        return False

    def _string_char(self, ch: str) -> bool:
        if self.escape == 1:
            if ch == "u":
                self.escape = 5
                return True
            self.escape = 0
            return ch in '"\\/bfnrt'
        if self.escape > 1:
            self.escape = self.escape - 1 if self.escape > 2 else 0
            return ch in "0123456789abcdefABCDEF"
        if ch == "\\":
            self.escape = 1
            return True
        if ch == '"':
            self.in_string = False
            if self.string_is_key:
                self.expect = "colon"
            else:
                self._value_done()
            return True
        return ch >= " "  # control characters must be escaped

    def _close(self, trailing_comma: bool = False) -> bool:
        if trailing_comma:  # `, }`: drop the comma (it never streamed: not a safe point)
            body = self.clean.rstrip()
            self.clean = body[:-1] + self.clean[len(body) :]
        self.clean += "}" if self.stack.pop() == "{" else "]"
        self._value_done()
        return True

    def _value_done(self) -> None:
        self.safe = len(self.clean)
        if not self.stack:
            self.done = True
        else:
            self.expect = "comma"

    @staticmethod
    def _scalar_continues(text: str) -> bool:
        if text[0].isalpha():
            return any(lit.startswith(text) for lit in _LITERALS)
        return _NUMBER_PREFIX.fullmatch(text) is not None

    @staticmethod
    def _scalar_complete(text: str) -> bool:
        if text in _LITERALS:
            return True
        try:
            json.loads(text)
        except ValueError:
            return False
        return True


def close_json(prefix: str) -> str:
    """The longest safe part of a prefix (see JsonScanner), completed with the quote and
    brackets it leaves open: a valid value, or "" when nothing of one was written."""
    scanner = JsonScanner()
    scanner.feed(prefix)
    scanner.finish()
    text = scanner.clean[: scanner.safe]
    at_safe = JsonScanner()
    at_safe.feed(text)
    closers = "".join("}" if b == "{" else "]" for b in reversed(at_safe.stack))
    return text + ('"' if at_safe.in_string else "") + closers


def loads_lenient(text: str) -> Any:
    """JSON as models write it: strict first, then with what is unambiguous repaired —
    trailing commas, Python literals and quotes, a value cut off at the end."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    without_commas = re.sub(r",\s*([}\]])", r"\1", text)
    try:
        return json.loads(without_commas)
    except ValueError:
        pass
    try:
        value = ast.literal_eval(without_commas)
        if isinstance(value, (dict, list)):
            return json.loads(json.dumps(value))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    scanner = JsonScanner()
    used = scanner.feed(without_commas)
    if not scanner.error and not scanner.done and used == len(without_commas) and scanner.safe:
        return json.loads(close_json(without_commas))  # cut short: close what is open
    raise ValueError(f"not JSON: {text[:80]!r}")
