"""Which served model a request's `model` name selects.

- a served model's id, or the reference it was configured with, selects that model;
- `claude-*` names select by tier (opus / sonnet / haiku → configured models, default the main one);
- a name that looks like a path, a hub id or a local store's model (`ollama:`, `lmstudio:`) and
  is not served → 404 listing what is served;
- any other name → the main model, unless strict names are configured (then 404 too).
No request string ever becomes a path or a hub id.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from pensieve_core import CLAUDE_TIERS, Engine
from pensieve_core.errors import ModelNotFoundError

if TYPE_CHECKING:
    from .ranks import RankGroup

_PATH_LIKE = re.compile(r"[/\\]|^[.~]|\.gguf$|\.safetensors$|^(ollama|lmstudio):")
# The ids Claude Code 2.1.332 asks for by default (opus/sonnet/haiku aliases); its /model
# picker keeps only gateway ids that start with "claude", so /v1/models lists these.
CLAUDE_TIER_IDS = {tier: f"claude-{tier}-5-5" for tier in CLAUDE_TIERS}


class ServedModels:
    def __init__(
        self,
        main: Engine,
        *,
        names: dict[str, Engine] | None = None,
        tiers: dict[str, Engine] | None = None,
        strict: bool = False,
        ranks: RankGroup | None = None,
    ) -> None:
        self.main = main
        # The other ranks' processes when the main model is sharded across several (--hostfile).
        self.ranks = ranks
        self._names = {main.model.id: main, **(names or {})}
        for engine in (tiers or {}).values():
            self._names.setdefault(engine.model.id, engine)
        self._tiers = tiers or {}
        self.strict = strict

    def engines(self) -> list[Engine]:
        unique: dict[int, Engine] = {}
        for engine in [self.main, *self._names.values(), *self._tiers.values()]:
            unique.setdefault(id(engine), engine)
        return list(unique.values())

    def tier_engines(self) -> dict[str, Engine]:
        """Each Claude tier and the engine its `claude-*` names select (as `select` does)."""
        return {tier: self._tiers.get(tier, self.main) for tier in CLAUDE_TIERS}

    def served_ids(self) -> list[str]:
        return [e.model.id for e in self.engines()]

    def _not_found(self, name: str) -> ModelNotFoundError:
        return ModelNotFoundError(f"model {name!r} is not served here; served models: {', '.join(self.served_ids())}")

    def select(self, name: str) -> Engine:
        if name in self._names:
            return self._names[name]
        if name.startswith("claude-"):
            tier = next((t for t in CLAUDE_TIERS if t in name), None)
            return self._tiers.get(tier, self.main) if tier else self.main
        if _PATH_LIKE.search(name) or self.strict:
            raise self._not_found(name)
        return self.main

    async def aclose(self) -> None:
        for engine in self.engines():
            await engine.aclose()
        if self.ranks is not None:  # the worker's stop told them: wait, then end any left
            await asyncio.to_thread(self.ranks.close)
