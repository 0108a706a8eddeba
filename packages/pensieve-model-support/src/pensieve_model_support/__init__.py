"""Model references, downloads and loading: aliases, Hugging Face repos, MLX directories,
GGUF files, Ollama's store, LM Studio's folder, and the bundled SmolLM2."""

from pensieve_core.errors import HubUnavailableError

from .bundled import BUNDLED_ALIAS, bundled_gguf_path
from .gguf.converted_store import ConvertedFile, clear_converted, converted_path, list_converted
from .gguf.summary import GGUFSummary, summarize_gguf
from .hub import Hub, HuggingFaceHub, hf_cache_dir
from .kv_memory import KVLayout, kv_layout
from .loading import LoadedModel, load_model, local_path, weight_files
from .local_stores import (
    OllamaModel,
    lmstudio_model,
    lmstudio_models,
    lmstudio_root,
    ollama_model,
    ollama_models,
    ollama_root,
)
from .mlx_lm_internals import hf_tokenizer, model_classes
from .references import ALIASES, STORE_PREFIXES, ModelRef, looks_like_repo_id, resolve_reference

__all__ = [
    "ALIASES",
    "BUNDLED_ALIAS",
    "STORE_PREFIXES",
    "ConvertedFile",
    "GGUFSummary",
    "Hub",
    "HubUnavailableError",
    "HuggingFaceHub",
    "KVLayout",
    "LoadedModel",
    "ModelRef",
    "OllamaModel",
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
]
