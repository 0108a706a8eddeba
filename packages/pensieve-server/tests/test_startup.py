"""Choosing what to serve at start-up: the default model downloads when the hub is reachable;
when it is neither cached nor reachable the bundled model is served and says so."""

import asyncio

from pensieve_core import Settings
from pensieve_model_support import ALIASES
from pensieve_model_support.testing import FakeHub
from pensieve_server import open_models

PHI3 = ALIASES["phi-3-mini"]


def test_default_model_is_downloaded_when_the_hub_is_reachable(tiny_model_dir, tmp_path):
    hub = FakeHub(tmp_path / "cache", {PHI3: tiny_model_dir})
    served = asyncio.run(open_models(Settings(), hub))
    try:
        assert hub.downloads == [PHI3]
        card = served.main.model
        assert card.id == "phi-3-mini" and card.source == "hub" and card.fallback_from is None
        assert served.select("phi-3-mini") is served.main
    finally:
        asyncio.run(served.aclose())


def test_bundled_model_stands_in_when_offline_and_says_so(tmp_path):
    hub = FakeHub(tmp_path / "cache", reachable=False)
    served = asyncio.run(open_models(Settings(), hub))
    try:
        card = served.main.model
        assert card.id == "smollm2-135m" and card.fallback_from == "phi-3-mini"
        assert "serving the bundled smollm2-135m instead" in card.note
    finally:
        asyncio.run(served.aclose())


def test_tier_models_load_once_each_and_share_the_worker(tiny_model_dir, tmp_path):
    from pensieve_model_support.testing import build_tiny_model

    small = build_tiny_model(tmp_path / "small", num_layers=1)
    settings = Settings(model=str(tiny_model_dir), haiku_model=str(small), sonnet_model=str(tiny_model_dir))
    served = asyncio.run(open_models(settings, FakeHub(tmp_path / "cache")))
    try:
        assert len(served.engines()) == 2
        assert served.select("claude-haiku-4-5").model.id == "small"
        assert served.select("claude-sonnet-5-5") is served.main
        assert served.select("claude-haiku-4-5").worker is served.main.worker
    finally:
        asyncio.run(served.aclose())


def test_a_draft_model_is_loaded_beside_the_main_model_and_drafts_its_lone_requests(tiny_model_dir, tmp_path):
    from pensieve_claude_types import MessageParam
    from pensieve_core import Finished, GenerationRequest
    from pensieve_model_support.testing import build_tiny_model

    draft = build_tiny_model(tmp_path / "draft", num_layers=1, seed=1)
    settings = Settings(model=str(tiny_model_dir), speculative="draft", draft_model=str(draft))
    served = asyncio.run(open_models(settings, FakeHub(tmp_path / "cache")))
    try:
        speculation = served.main.speculation
        assert speculation is not None and speculation.draft is not None and speculation.draft.name == "draft"
        req = GenerationRequest(messages=[MessageParam(role="user", content="Hi")], max_tokens=8, temperature=0.0)

        async def answer():
            return [e async for e in served.main.generate(req)]

        events = asyncio.run(answer())
        assert isinstance(events[-1], Finished) and events[-1].output_tokens == 8
    finally:
        asyncio.run(served.aclose())
