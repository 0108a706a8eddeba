"""Whether reading a persisted prefix back beats computing it again, on this device.

On a fast GPU a prefix with many KV heads can be slower to read from disk than to prefill
(Phi-3-mini's 10K-token system prompt: 3.9 GB, restored at 1.33x the cold time on an H200);
on a CPU or Apple Silicon reading wins by far. So both speeds are measured as the server
works (long prefills in the lane, each restore) and a restore happens only when it pays."""

from __future__ import annotations

# Weight of the newest measurement in each running average.
_NEW = 0.3


class DeviceSpeeds:
    def __init__(self) -> None:
        self.prefill_tokens_per_s: float | None = None
        self.read_bytes_per_s: float | None = None

    @staticmethod
    def _mix(old: float | None, new: float) -> float:
        return new if old is None else (1 - _NEW) * old + _NEW * new

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens > 0 and seconds > 0:
            self.prefill_tokens_per_s = self._mix(self.prefill_tokens_per_s, tokens / seconds)

    def read(self, nbytes: int, seconds: float) -> None:
        if nbytes > 0 and seconds > 0:
            self.read_bytes_per_s = self._mix(self.read_bytes_per_s, nbytes / seconds)

    def worth_reading(self, tokens: int, nbytes: int) -> bool:
        """True until both speeds are known (a first restore measures reading); then only
        when reading `nbytes` takes no longer than prefilling `tokens`."""
        if self.prefill_tokens_per_s is None or self.read_bytes_per_s is None:
            return True
        return nbytes / self.read_bytes_per_s <= tokens / self.prefill_tokens_per_s

    def estimates(self, tokens: int, nbytes: int) -> dict[str, float]:
        """Seconds each way, for the log line that says why a restore was skipped."""
        assert self.prefill_tokens_per_s is not None and self.read_bytes_per_s is not None
        return {
            "read_s": round(nbytes / self.read_bytes_per_s, 3),
            "prefill_s": round(tokens / self.prefill_tokens_per_s, 3),
        }
