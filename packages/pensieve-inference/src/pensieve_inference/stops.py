"""Stop sequences on streamed text: hold back what might be the start of one."""

from __future__ import annotations

from .markers import held_prefix


class StopSequenceMatcher:
    def __init__(self, stop_sequences: list[str] | None) -> None:
        self.stops = [s for s in (stop_sequences or []) if s]
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Text safe to emit now; sets `matched` once a stop sequence appears."""
        if not self.stops or self.matched is not None:
            return "" if self.matched is not None else text
        buffer = self._held + text
        hits = [(buffer.find(s), s) for s in self.stops if s in buffer]
        if hits:
            index, self.matched = min(hits)
            self._held = ""
            return buffer[:index]
        keep = max((held_prefix(buffer, s) for s in self.stops), default=0)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
