"""Loading GGUF files into MLX."""

from .loader import load_gguf
from .reader import GGUFContents, read_gguf
from .tensor_types import SUPPORTED, check_tensor_types, tensor_types
from .tokenizer import build_tokenizer

__all__ = [
    "SUPPORTED",
    "GGUFContents",
    "build_tokenizer",
    "check_tensor_types",
    "load_gguf",
    "read_gguf",
    "tensor_types",
]
