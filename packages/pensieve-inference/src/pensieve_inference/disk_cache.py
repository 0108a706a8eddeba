"""Hot prefixes on disk, so a restart does not pay for Claude Code's system prompt and tools
again. One safetensors file per prefix (mlx-lm's prompt-cache format) under
`<home>/prefix-cache/<model identity>/<token hash>.safetensors`; the token ids travel in the
file's metadata, so listing needs no MLX. Oldest files go first past the size cap."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import structlog
from mlx_lm.models.cache import KVCache, load_prompt_cache, save_prompt_cache

log = structlog.get_logger("pensieve.prefix_cache")

SUFFIX = ".safetensors"


@dataclass(frozen=True)
class DiskEntry:
    path: Path
    model: str
    model_name: str
    tokens: tuple[int, ...]
    size_bytes: int
    saved_at: float


def token_hash(tokens: list[int] | tuple[int, ...]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(tokens)}I", *tokens)).hexdigest()[:32]


def _metadata(path: Path) -> dict[str, str]:
    """The safetensors header's __metadata__, read without loading any tensor."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    meta = header.get("__metadata__", {})
    # mlx-lm nests its own metadata under "0." (user metadata is the first list element).
    return {k.removeprefix("0."): v for k, v in meta.items()}


def read_entry(path: Path) -> DiskEntry | None:
    try:
        meta = _metadata(path)
        stat = path.stat()
        return DiskEntry(
            path=path,
            model=meta.get("pensieve_model", ""),
            model_name=meta.get("pensieve_model_name", ""),
            tokens=tuple(json.loads(meta["pensieve_tokens"])),
            size_bytes=stat.st_size,
            saved_at=stat.st_mtime,
        )
    except (OSError, KeyError, ValueError, struct.error):
        return None  # half-written or foreign: not ours to use


def list_entries(root: Path) -> list[DiskEntry]:
    """Every persisted prefix under root (all models), newest first."""
    if not root.is_dir():
        return []
    found = (read_entry(p) for p in root.glob(f"*/*{SUFFIX}") if ".tmp" not in p.name)
    return sorted((e for e in found if e is not None), key=lambda e: e.saved_at, reverse=True)


def clear(root: Path) -> tuple[int, int]:
    """Delete every persisted prefix; (files, bytes) removed."""
    files = size = 0
    for entry in list_entries(root):
        try:
            entry.path.unlink()
        except OSError:
            continue
        files, size = files + 1, size + entry.size_bytes
    return files, size


def _frozen(cache: list[Any]) -> list[Any] | None:
    """Exact, evaluated copies of the layers' keys and values (worker thread), so writing the
    file elsewhere computes nothing. Only plain KV caches are persisted."""
    if not all(isinstance(c, KVCache) and c.keys is not None for c in cache):
        return None
    out = []
    for c in cache:
        keys = mx.contiguous(c.keys[..., : c.offset, :])
        values = mx.contiguous(c.values[..., : c.offset, :])
        out.append(KVCache.from_state((keys, values, c.offset)))
    mx.eval([(c.keys, c.values) for c in out])
    return out


class DiskPrefixStore:
    """One model's persisted prefixes: an index in memory, files written by a helper thread."""

    def __init__(self, root: Path, model_identity: str, max_bytes: int, *, model_name: str = "") -> None:
        self.root = root
        self.model_name = model_name
        self.dir = root / model_identity
        self.model = model_identity
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._writers: list[threading.Thread] = []
        self._index: dict[tuple[int, ...], Path] = {
            e.tokens: e.path for e in list_entries(root) if e.path.parent == self.dir
        }

    def __len__(self) -> int:
        return len(self._index)

    def longest_prefix(self, prompt: list[int], longer_than: int) -> tuple[tuple[int, ...], Path] | None:
        best = None
        for tokens, path in list(self._index.items()):
            n = len(tokens)
            if longer_than < n <= len(prompt) and (best is None or n > len(best[0])) and prompt[:n] == list(tokens):
                best = (tokens, path)
        return best

    def load(self, tokens: tuple[int, ...], path: Path) -> list[Any] | None:
        try:
            cache = load_prompt_cache(str(path))
            os.utime(path)  # recently used: the last to be evicted
            return cache
        except Exception as exc:  # noqa: BLE001 — a missing or broken file is only a miss
            log.warning("prefix_cache_file_unreadable", path=str(path), error=str(exc))
            with self._lock:
                self._index.pop(tokens, None)
            return None

    def save(self, tokens: list[int], cache: list[Any]) -> threading.Thread | None:
        """Persist unless already there; the file is written off the worker thread."""
        key = tuple(tokens)
        if key in self._index or self.max_bytes <= 0:
            return None
        frozen = _frozen(cache)
        if frozen is None:
            return None
        path = self.dir / f"{token_hash(key)}{SUFFIX}"
        with self._lock:
            self._index[key] = path
        writer = threading.Thread(target=self._write, args=(key, path, frozen), name="pensieve-cache-writer", daemon=True)
        writer.start()
        self._writers = [w for w in self._writers if w.is_alive()] + [writer]
        return writer

    def wait(self, timeout: float = 60) -> None:
        """Until the files being written are on disk (tests, shutdown)."""
        for writer in list(self._writers):
            writer.join(timeout)

    def _write(self, key: tuple[int, ...], path: Path, cache: list[Any]) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.tmp{SUFFIX}")
            meta = {"pensieve_model": self.model, "pensieve_model_name": self.model_name, "pensieve_tokens": json.dumps(list(key)),
                    "pensieve_saved_at": str(time.time())}
            save_prompt_cache(str(partial), cache, meta)
            os.replace(partial, path)
            self._evict()
            log.info("prefix_cache_saved", tokens=len(key), path=str(path))
        except Exception as exc:  # noqa: BLE001 — persisting is best effort; serving goes on
            log.warning("prefix_cache_save_failed", path=str(path), error=str(exc))
            with self._lock:
                self._index.pop(key, None)

    def _evict(self) -> None:
        """Oldest files out until this model's files fit in max_bytes."""
        entries = [e for e in list_entries(self.root) if e.path.parent == self.dir]
        total = sum(e.size_bytes for e in entries)
        for entry in reversed(entries):
            if total <= self.max_bytes:
                break
            try:
                entry.path.unlink()
            except OSError:
                continue
            total -= entry.size_bytes
            with self._lock:
                self._index.pop(entry.tokens, None)
