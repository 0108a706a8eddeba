"""A request's `model` never reaches Ollama's store or LM Studio's folder: only references the
user configured at start are served, by the name they were configured with."""

from types import SimpleNamespace

import pytest

from pensieve_core.errors import ModelNotFoundError
from pensieve_server import ServedModels


def engine(model_id):
    return SimpleNamespace(model=SimpleNamespace(id=model_id))


def test_store_references_in_a_request_are_not_found_unless_configured():
    main, coder = engine("smollm2-135m"), engine("qwen3-coder:30b")
    # As startup builds it: each configured reference names its engine; a tier serves it.
    served = ServedModels(main, names={"ollama:qwen3-coder:30b": coder}, tiers={"sonnet": coder})
    assert served.select("ollama:qwen3-coder:30b") is coder and served.select("qwen3-coder:30b") is coder
    for name in ("ollama:llama3", "ollama:../../etc", "lmstudio:me/Mine", "lmstudio:x"):
        with pytest.raises(ModelNotFoundError, match="served models: smollm2-135m, qwen3-coder:30b"):
            served.select(name)
