"""Fake Ollama stores and LM Studio folders for tests, laid out as the tools write them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

# Written as Ollama writes them, not from the code under test.
OLLAMA_HOST, OLLAMA_NAMESPACE = "registry.ollama.ai", "library"

GO_TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ .Prompt }}"


def _blob(root: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def write_ollama_model(
    root: Path,
    model: str,
    gguf: Path,
    *,
    tag: str = "latest",
    namespace: str = OLLAMA_NAMESPACE,
    host: str = OLLAMA_HOST,
    parameters: dict[str, Any] | None = None,
    system: str | None = None,
) -> Path:
    """A manifest (as `ollama pull` writes it) whose model layer is `gguf`'s bytes; its path."""
    media = "application/vnd.ollama.image."
    layers = [_blob(root, gguf.read_bytes(), media + "model"), _blob(root, GO_TEMPLATE.encode(), media + "template")]
    if parameters is not None:
        layers.append(_blob(root, json.dumps(parameters).encode(), media + "params"))
    if system is not None:
        layers.append(_blob(root, system.encode(), media + "system"))
    config = _blob(
        root, json.dumps({"model_format": "gguf"}).encode(), "application/vnd.docker.container.image.v1+json"
    )
    manifest = root / "manifests" / host / namespace / model / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": config,
                "layers": layers,
            }
        )
    )
    return manifest


def write_lmstudio_model(root: Path, publisher: str, repo: str, source: Path, name: str | None = None) -> Path:
    """`source` (a GGUF file or an MLX directory) copied to `<root>/<publisher>/<repo>/`."""
    folder = root / publisher / repo
    if source.is_dir():
        shutil.copytree(source, folder, dirs_exist_ok=True)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, folder / (name or source.name)))
