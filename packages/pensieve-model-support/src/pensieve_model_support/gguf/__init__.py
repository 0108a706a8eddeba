"""Loading GGUF files into MLX."""

from .loader import load_gguf
from .reader import GGUFContents, read_gguf
from .tokenizer import build_tokenizer

__all__ = ["GGUFContents", "build_tokenizer", "load_gguf", "read_gguf"]
