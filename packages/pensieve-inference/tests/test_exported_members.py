"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_inference

EXPECTED = {
    "BILLING_PREFIX",
    "DiskEntry",
    "EngineOptions",
    "GenerationJob",
    "GenerationWorker",
    "Lockstep",
    "MLXEngine",
    "PromptRenderer",
    "RankInfo",
    "RenderedPrompt",
    "StopSequenceMatcher",
    "ToolCallStream",
    "build_conversation",
    "clear_disk_cache",
    "list_disk_entries",
    "load_draft",
    "offered_tools",
    "sampler_args",
    "verify_disk_entry",
}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_inference).items()
        if not name.startswith("_") and not (isinstance(value, ModuleType) and name not in pensieve_inference.__all__)
    }
    assert set(pensieve_inference.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
