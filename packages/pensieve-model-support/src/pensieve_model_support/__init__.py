"""Model references, downloads and loading: aliases, Hugging Face repos, MLX directories,
GGUF files, and the bundled SmolLM2."""

from .bundled import BUNDLED_ALIAS, bundled_gguf_path
from .hub import Hub, HubUnavailableError, HuggingFaceHub, hf_cache_dir
from .loading import LoadedModel, load_model, local_path, weight_files
from .mlx_lm_internals import hf_tokenizer, model_classes
from .references import ALIASES, ModelRef, looks_like_repo_id, resolve_reference

__all__ = [
    "ALIASES",
    "BUNDLED_ALIAS",
    "Hub",
    "HubUnavailableError",
    "HuggingFaceHub",
    "LoadedModel",
    "ModelRef",
    "bundled_gguf_path",
    "hf_cache_dir",
    "hf_tokenizer",
    "load_model",
    "local_path",
    "looks_like_repo_id",
    "model_classes",
    "resolve_reference",
    "weight_files",
]
