"""Hot prefixes on disk, so a restart does not pay for Claude Code's system prompt and tools
again. One safetensors file per prefix (mlx-lm's prompt-cache format, see `cache_file`) under
`<home>/prefix-cache/<model identity>/<token hash>.safetensors`; the token ids travel in the
file's metadata, so listing needs no tensor. Oldest files go first past the size cap. A file
that fails its checks is a miss: logged and removed, never used."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import structlog
from mlx_lm.models.cache import KVCache

from . import cache_file
from .cache_file import CorruptFileError, token_hash

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
    # Why the file cannot be used ("" when its header checks out); the server removes such files.
    problem: str = ""


def read_entry(path: Path) -> DiskEntry | None:
    """The entry for one file, its header checked (None if the file is gone)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    base = DiskEntry(
        path=path, model=path.parent.name, model_name="", tokens=(), size_bytes=stat.st_size, saved_at=stat.st_mtime
    )
    try:
        header = cache_file.read_header(path)
    except CorruptFileError as exc:
        return replace(base, problem=str(exc))
    except OSError as exc:
        return replace(base, problem=f"unreadable: {exc}")
    return replace(base, model=header.model, model_name=header.model_name, tokens=header.tokens)


def verify_entry(entry: DiskEntry) -> DiskEntry:
    """The entry with its tensor bytes checked against the digest too (reads the whole file)."""
    if entry.problem:
        return entry
    try:
        cache_file.verify(entry.path)
    except CorruptFileError as exc:
        return replace(entry, problem=str(exc))
    except OSError as exc:
        return replace(entry, problem=f"unreadable: {exc}")
    return entry


def _files(root: Path) -> list[Path]:
    return sorted(root.glob(f"*/*{SUFFIX}")) if root.is_dir() else []


def list_entries(root: Path) -> list[DiskEntry]:
    """Every persisted prefix under root (all models), newest first; broken ones carry a problem."""
    found = (read_entry(p) for p in _files(root) if ".tmp" not in p.name)
    return sorted((e for e in found if e is not None), key=lambda e: e.saved_at, reverse=True)


def clear(root: Path) -> tuple[int, int]:
    """Delete every file the prefix cache keeps, broken and half-written ones too; (files, bytes)."""
    files = size = 0
    for path in _files(root):
        try:
            n = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        files, size = files + 1, size + n
    for folder in root.iterdir() if root.is_dir() else ():
        try:
            folder.rmdir()  # only the emptied ones; anything else stays
        except OSError:
            pass
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
        self._index: dict[tuple[int, ...], Path] = {}
        for entry in list_entries(root):
            if entry.path.parent != self.dir:
                continue
            if entry.problem:
                self._discard(entry.path, entry.problem)
            else:
                self._index[entry.tokens] = entry.path

    def __len__(self) -> int:
        return len(self._index)

    @property
    def speeds_path(self) -> Path:
        """Where this model's read and prefill speeds on this device are kept (restore_cost.py)."""
        return self.dir / f"speeds-{mx.default_device().type.name}.json"

    def longest_prefix(self, prompt: list[int], longer_than: int) -> tuple[tuple[int, ...], Path] | None:
        best = None
        for tokens, path in list(self._index.items()):
            n = len(tokens)
            if longer_than < n <= len(prompt) and (best is None or n > len(best[0])) and prompt[:n] == list(tokens):
                best = (tokens, path)
        return best

    def largest(self) -> Path | None:
        """The biggest persisted file, or None: what a guess of the read speed reads from."""
        paths = list(self._index.values())
        return max(paths, key=self.size_of) if paths else None

    @staticmethod
    def size_of(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    def load(self, tokens: tuple[int, ...], path: Path) -> list[Any] | None:
        """The file's caches once every check passes; otherwise a miss (a corrupt file goes)."""
        try:
            header, cache = cache_file.read(path)
            if header.tokens != tokens:
                raise CorruptFileError("its token ids are not the ones it was indexed under")
            os.utime(path)  # recently used: the last to be evicted
            return cache
        except CorruptFileError as exc:
            self._discard(path, str(exc))
        except OSError as exc:  # gone (cache clear) or unreadable: only a miss
            log.warning("prefix_cache_file_unreadable", path=str(path), error=str(exc))
        with self._lock:
            self._index.pop(tokens, None)
        return None

    def _discard(self, path: Path, problem: str) -> None:
        try:
            path.unlink()
        except OSError:
            pass
        log.warning("prefix_cache_file_corrupt", path=str(path), problem=problem, action="removed, a miss")

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
        writer = threading.Thread(
            target=self._write, args=(key, path, frozen), name="pensieve-cache-writer", daemon=True
        )
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
            cache_file.write(partial, cache, model=self.model, model_name=self.model_name, tokens=key)
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
