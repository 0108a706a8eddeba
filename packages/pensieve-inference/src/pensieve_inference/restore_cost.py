"""Whether reading a persisted prefix back beats computing it again, on this device.

On a fast GPU a prefix with many KV heads can be slower to read from disk than to prefill
(Phi-3-mini's 10K-token system prompt: 3.9 GB, restored at 1.33x the cold time on an H200);
on a CPU or Apple Silicon reading wins by far. So both speeds are measured as the server
works (long prefills in the lane, each restore; before the first restore, a plain read of a
file's start) and a restore happens only when it pays.
The speeds are kept beside the model's persisted prefixes, one file per device, so the first
restore after a restart is decided by them too."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import msgspec
import structlog

log = structlog.get_logger("pensieve.inference")

# Weight of the newest measurement in each running average.
_NEW = 0.3
# Bytes read from the start of a persisted prefix for a first guess of the read speed.
PROBE_BYTES = 64 * 2**20

_Speed = Annotated[float, msgspec.Meta(gt=0)] | None


class _Saved(msgspec.Struct, kw_only=True):
    prefill_tokens_per_s: _Speed = None
    read_bytes_per_s: _Speed = None


class DeviceSpeeds:
    def __init__(self, path: Path | None = None) -> None:
        """`path`: where the speeds are kept across restarts (None: in memory only)."""
        self._path = path
        self.prefill_tokens_per_s: float | None = None
        self.read_bytes_per_s: float | None = None
        if path is not None:
            try:
                saved = msgspec.json.decode(path.read_bytes(), type=_Saved)
            except FileNotFoundError:
                return
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:  # measured again
                log.warning("device_speeds_unreadable", path=str(path), error=str(exc))
                return
            self.prefill_tokens_per_s, self.read_bytes_per_s = saved.prefill_tokens_per_s, saved.read_bytes_per_s

    def _save(self) -> None:
        if self._path is None:
            return
        saved = _Saved(prefill_tokens_per_s=self.prefill_tokens_per_s, read_bytes_per_s=self.read_bytes_per_s)
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(msgspec.json.encode(saved))
            os.replace(tmp, self._path)
        except OSError as exc:  # a full or read-only disk: the speeds stay in memory
            log.warning("device_speeds_not_saved", path=str(self._path), error=str(exc))

    @staticmethod
    def _mix(old: float | None, new: float) -> float:
        return new if old is None else (1 - _NEW) * old + _NEW * new

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens > 0 and seconds > 0:
            self.prefill_tokens_per_s = self._mix(self.prefill_tokens_per_s, tokens / seconds)
            self._save()

    def read(self, nbytes: int, seconds: float) -> None:
        if nbytes > 0 and seconds > 0:
            self.read_bytes_per_s = self._mix(self.read_bytes_per_s, nbytes / seconds)
            self._save()

    def probe(self, path: Path) -> None:
        """With prefill measured but no restore yet, a first guess of the read speed from a plain
        read of the start of `path`: without it the first restore after a restart read Phi-3-mini's
        3.6 GB prefix in 4.2 s where prefilling took 1.7 (H200). A plain read is at least as fast
        as a restore (which also checks the digest and moves the arrays), so the guess skips only
        reads that would not pay. Files under PROBE_BYTES are read as before."""
        if self.read_bytes_per_s is not None or self.prefill_tokens_per_s is None:
            return
        started = time.perf_counter()
        try:
            with path.open("rb", buffering=0) as f:
                got = len(f.read(PROBE_BYTES)) if path.stat().st_size >= PROBE_BYTES else 0
        except OSError:
            return  # the restore itself will meet the problem and say so
        if got:
            self.read(got, time.perf_counter() - started)

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
