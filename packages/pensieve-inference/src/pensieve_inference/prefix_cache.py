"""KV caches reused across requests: Claude Code resends the same system prompt, tools and
conversation every turn, so only the new tail needs a prefill. Built on mlx-lm's
LRUPromptCache (a token trie with LRU eviction, bounded by bytes), with system prompts also
kept on disk when a store is given. Worker thread only."""

from __future__ import annotations

import time
from typing import Any

import mlx.core as mx
import structlog
from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from .disk_cache import DiskPrefixStore
from .restore_cost import DeviceSpeeds

log = structlog.get_logger("pensieve.inference")

# A shorter prefix is prefilled again, not copied: it is a chat template's opening (3-5 tokens
# before the first message), which any two new conversations share. For it mlx-lm copies the
# whole longer entry and trims it; on the H200 a 16-stream burst's prefills then took ~5x as
# long, and the bf16 16-stream aggregate went from 0.73x raw BatchGenerator to 1.02x without.
MIN_REUSE_TOKENS = 8


class PrefixCache:
    def __init__(self, max_bytes: int, max_entries: int = 8, *, disk: DiskPrefixStore | None = None) -> None:
        self._lru = LRUPromptCache(max_size=max_entries, max_bytes=max_bytes)
        self.disk = disk
        self.speeds = DeviceSpeeds(disk.speeds_path if disk is not None else None)
        largest = disk.largest() if disk is not None else None
        if largest is not None:  # at start: the first request after a restart no longer pays the read
            self.speeds.probe(largest)

    @property
    def nbytes(self) -> int:
        size: int = self._lru.nbytes
        return size

    def take(self, key: str, model: Any, prompt: list[int]) -> tuple[list[Any], list[int]]:
        """A cache holding the longest known prefix of `prompt`, and the tokens still to run."""
        cache, rest = self._lru.fetch_nearest_cache(key, prompt)
        if self.disk is not None:
            cache, rest = self._from_disk(key, prompt, cache, rest)
        if cache is None or len(prompt) - len(rest) < min(MIN_REUSE_TOKENS, len(prompt) - 1):
            return make_prompt_cache(model), prompt
        if not rest:
            # An exact hit: the last prompt token must still run to give the next logits.
            if not can_trim_prompt_cache(cache):
                return make_prompt_cache(model), prompt
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        return cache, rest

    def _from_disk(self, key: str, prompt: list[int], cache: Any, rest: list[int]) -> tuple[Any, list[int]]:
        """A persisted prefix longer than what memory had: load it, keep it in memory too."""
        assert self.disk is not None
        found = self.disk.longest_prefix(prompt, longer_than=len(prompt) - len(rest))
        if found is None:
            return cache, rest
        gain = len(found[0]) - (len(prompt) - len(rest))  # tokens the restore saves prefilling
        nbytes = self.disk.size_of(found[1])
        self.speeds.probe(found[1])  # a first guess of the read speed, once
        if not self.speeds.worth_reading(gain, nbytes):
            log.info("prefix_cache_restore_skipped", tokens=gain, bytes=nbytes, **self.speeds.estimates(gain, nbytes))
            return cache, rest
        started = time.perf_counter()
        loaded = self.disk.load(*found)
        if loaded is None:
            return cache, rest
        mx.eval([c.state for c in loaded])  # on the device now: the read is measured whole
        self.speeds.read(nbytes, time.perf_counter() - started)
        tokens = list(found[0])
        self._lru.insert_cache(key, tokens, loaded, cache_type="system")
        nearest: tuple[Any, list[int]] = self._lru.fetch_nearest_cache(key, prompt)
        return nearest

    def put(self, key: str, fed_tokens: list[int], cache: list[Any], *, persist: bool = False) -> None:
        """Keep `cache` under the tokens whose keys and values it holds (on disk too if
        `persist`: the system prompt and tools, worth keeping across restarts)."""
        offset = getattr(cache[0], "offset", None) if cache else None
        if offset is None or offset > len(fed_tokens) or offset == 0:
            return  # cannot tell which tokens it holds: keep nothing rather than something wrong
        tokens = fed_tokens[:offset]
        if persist and self.disk is not None:
            self.disk.save(tokens, cache)
        self._lru.insert_cache(key, tokens, cache, cache_type="system" if persist else "assistant")
