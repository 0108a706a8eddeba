"""KV caches reused across requests: Claude Code resends the same system prompt, tools and
conversation every turn, so only the new tail needs a prefill. Built on mlx-lm's
LRUPromptCache (a token trie with LRU eviction, bounded by bytes). Worker thread only."""

from __future__ import annotations

from typing import Any

from mlx_lm.models.cache import (
    LRUPromptCache,
    can_trim_prompt_cache,
    make_prompt_cache,
    trim_prompt_cache,
)


class PrefixCache:
    def __init__(self, max_bytes: int, max_entries: int = 8) -> None:
        self._lru = LRUPromptCache(max_size=max_entries, max_bytes=max_bytes)

    @property
    def nbytes(self) -> int:
        return self._lru.nbytes

    def take(self, key: str, model: Any, prompt: list[int]) -> tuple[list[Any], list[int]]:
        """A cache holding the longest known prefix of `prompt`, and the tokens still to run."""
        cache, rest = self._lru.fetch_nearest_cache(key, prompt)
        if cache is None:
            return make_prompt_cache(model), prompt
        if not rest:
            # An exact hit: the last prompt token must still run to give the next logits.
            if not can_trim_prompt_cache(cache):
                return make_prompt_cache(model), prompt
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        return cache, rest

    def put(self, key: str, fed_tokens: list[int], cache: list[Any]) -> None:
        """Keep `cache` under the tokens whose keys and values it holds."""
        offset = getattr(cache[0], "offset", None) if cache else None
        if offset is None or offset > len(fed_tokens) or offset == 0:
            return  # cannot tell which tokens it holds: keep nothing rather than something wrong
        self._lru.insert_cache(key, fed_tokens[:offset], cache)
