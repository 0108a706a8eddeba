"""The Hugging Face hub: the standard cache, and downloads with a progress bar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from pensieve_core.errors import HubUnavailableError

# Only what loading needs; weights only as safetensors (never pickles).
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer.model", "*.tiktoken", "*.txt"]


def hf_cache_dir() -> Path:
    """The standard Hugging Face cache, read from the environment at call time."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


class Hub(Protocol):
    def cached(self, repo_id: str) -> Path | None:
        """The local snapshot if the repository is fully cached, else None. No network."""
        ...

    def download(self, repo_id: str) -> Path:
        """Fetch the repository into the cache (showing progress); raise HubUnavailableError."""
        ...


class HuggingFaceHub:
    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir or hf_cache_dir()

    def cached(self, repo_id: str) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot = snapshot_download(
                repo_id, allow_patterns=ALLOW_PATTERNS, local_files_only=True, cache_dir=self.cache_dir
            )
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None
        path = Path(snapshot)
        return path if (path / "config.json").exists() else None

    def download(self, repo_id: str) -> Path:
        from huggingface_hub import snapshot_download

        try:
            # snapshot_download draws a tqdm progress bar per file on the terminal.
            return Path(snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS, cache_dir=self.cache_dir))
        except Exception as exc:  # the hub client raises many network and HTTP error types
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HubUnavailableError(f"cannot download {repo_id} from the Hugging Face hub ({reason})") from exc
