"""The package's face: what other packages may import. Changing it is deliberate: edit this list."""

from types import ModuleType

import pensieve_model_support

EXPECTED = {
    "ALIASES",
    "BUNDLED_ALIAS",
    "ConvertedFile",
    "GGUFSummary",
    "Hub",
    "HubUnavailableError",
    "HuggingFaceHub",
    "KVLayout",
    "LoadedModel",
    "ModelRef",
    "OllamaModel",
    "STORE_PREFIXES",
    "bundled_gguf_path",
    "clear_converted",
    "converted_path",
    "hf_cache_dir",
    "hf_tokenizer",
    "kv_layout",
    "list_converted",
    "lmstudio_model",
    "lmstudio_models",
    "lmstudio_root",
    "load_model",
    "local_path",
    "looks_like_repo_id",
    "model_classes",
    "ollama_model",
    "ollama_models",
    "ollama_root",
    "resolve_reference",
    "summarize_gguf",
    "weight_files",
}


def test_exported_members():
    public = {
        name
        for name, value in vars(pensieve_model_support).items()
        if not name.startswith("_")
        and not (isinstance(value, ModuleType) and name not in pensieve_model_support.__all__)
    }
    assert set(pensieve_model_support.__all__) == EXPECTED
    assert public == EXPECTED, "every public name is in __all__ and every name in __all__ exists"
