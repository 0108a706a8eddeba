"""Models other tools already keep on disk: Ollama's store and LM Studio's models folder.

Ollama (`$OLLAMA_MODELS`, default `~/.ollama/models`): `manifests/<host>/<namespace>/<model>/<tag>`
is an OCI-style JSON manifest; its `application/vnd.ollama.image.model` layer is a GGUF file at
`blobs/sha256-<hex>`, beside `...image.template` (a Go template), `...image.params` (JSON),
`...image.system`, `...image.license`. Names are `[host/][namespace/]model[:tag]`, defaulting to
`registry.ollama.ai`, `library` and `latest`.

LM Studio (`~/.lmstudio/models`, or the `downloadsFolder` of its `settings.json`, or the older
`~/.cache/lm-studio/models`): `<publisher>/<repo>/` holding GGUF files or an MLX model directory.

Names are checked part by part before any path is built: no part may be `..` or hold a slash.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec

from pensieve_core import default_home
from pensieve_core.errors import ModelLoadError, ModelNotFoundError

OLLAMA_HOST, OLLAMA_NAMESPACE, OLLAMA_TAG = "registry.ollama.ai", "library", "latest"
_MEDIA = "application/vnd.ollama.image."
# Ollama's own rule for a name part (types/model/name.go): alphanumeric first, then [\w.-], ≤ 80.
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_FILE = re.compile(r"^[A-Za-z0-9][\w.+-]*\.gguf$", re.IGNORECASE)
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


class OllamaModel(msgspec.Struct, kw_only=True):
    name: str  # as `ollama list` shows it: library models without host and namespace
    blob: Path
    size_bytes: int
    template: str | None = None  # Go template: listed, never run (the GGUF's own Jinja one is used)
    system: str | None = None
    parameters: dict[str, Any] = {}
    adapter: bool = False  # a LoRA layer Ollama applies on top; pensieve does not


def ollama_root() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def _checked(part: str, what: str, ref: str) -> str:
    if not _PART.match(part) or ".." in part:
        raise ModelNotFoundError(
            f"{ref!r}: {what} {part!r} is not a valid name part (letters, digits, '_', '-', '.'; no '..')"
        )
    return part


def parse_ollama_name(name: str) -> tuple[str, str, str, str]:
    """`[host/][namespace/]model[:tag]` → (host, namespace, model, tag)."""
    ref = f"ollama:{name}"
    path, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    if ":" in path:
        raise ModelNotFoundError(f"{ref!r}: a port or a second ':' is not part of an Ollama name")
    parts = path.split("/")
    if len(parts) > 3 or not all(parts):
        raise ModelNotFoundError(f"{ref!r} is not an Ollama name ([host/][namespace/]model[:tag])")
    host, namespace, model = [OLLAMA_HOST, OLLAMA_NAMESPACE][: 3 - len(parts)] + parts
    return (
        _checked(host, "host", ref),
        _checked(namespace, "namespace", ref),
        _checked(model, "model", ref),
        _checked(tag or OLLAMA_TAG, "tag", ref),
    )


def _display(host: str, namespace: str, model: str, tag: str) -> str:
    if host != OLLAMA_HOST:
        return f"{host}/{namespace}/{model}:{tag}"
    return f"{model}:{tag}" if namespace == OLLAMA_NAMESPACE else f"{namespace}/{model}:{tag}"


def _blob(root: Path, digest: str) -> Path:
    match = _DIGEST.match(str(digest))
    if not match:
        raise ModelNotFoundError(f"Ollama manifest names a malformed blob digest {digest!r}")
    return root / "blobs" / f"sha256-{match.group(1)}"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _from_manifest(root: Path, manifest: Path, name: str) -> OllamaModel:
    try:
        layers = json.loads(manifest.read_text())["layers"]
        by_kind = {str(layer.get("mediaType", "")).removeprefix(_MEDIA): layer for layer in layers}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelNotFoundError(f"ollama:{name}: cannot read its manifest {manifest}: {exc}") from exc
    if "model" not in by_kind:
        raise ModelNotFoundError(f"ollama:{name} has no model layer (a GGUF blob) in {manifest}")
    blob = _blob(root, by_kind["model"].get("digest", ""))
    if not blob.is_file():
        raise ModelNotFoundError(f"ollama:{name}: its model blob {blob} is missing (pull it again with Ollama)")
    texts = {
        kind: _read_text(_blob(root, by_kind[kind].get("digest", "")))
        for kind in ("template", "system", "params")
        if kind in by_kind
    }
    try:
        params = json.loads(texts.get("params") or "{}")
    except ValueError:
        params = {}
    return OllamaModel(
        name=name,
        blob=blob,
        size_bytes=blob.stat().st_size,
        template=texts.get("template"),
        system=texts.get("system"),
        parameters=params if isinstance(params, dict) else {},
        adapter="adapter" in by_kind,
    )


def gguf_link(blob: Path, home: Path | None = None) -> Path:
    """A `.gguf`-named link to an Ollama blob under pensieve's home: `mx.load` picks its reader
    by the file's suffix, and Ollama's blobs have none."""
    link = (home or default_home()) / "links" / "ollama" / f"{blob.name}.gguf"
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.resolve() != blob.resolve():
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(blob)
    except OSError as exc:
        raise ModelLoadError(f"cannot link {blob} as {link}: {exc}") from exc
    return link


def ollama_model(name: str, root: Path | None = None) -> OllamaModel:
    """The model an Ollama name refers to; a clear error when it is not in the store."""
    root = root or ollama_root()
    host, namespace, model, tag = parse_ollama_name(name)
    manifest = root / "manifests" / host / namespace / model / tag
    if not manifest.is_file():
        raise ModelNotFoundError(
            f"ollama:{name} is not in Ollama's store ({root}; set OLLAMA_MODELS if it lives elsewhere)"
        )
    return _from_manifest(root, manifest, _display(host, namespace, model, tag))


def ollama_models(root: Path | None = None) -> list[tuple[str, OllamaModel | ModelNotFoundError]]:
    """Every manifest in the store, in path order: its name and model, or why it is unusable."""
    root = root or ollama_root()
    found: list[tuple[str, OllamaModel | ModelNotFoundError]] = []
    for manifest in sorted((root / "manifests").glob("*/*/*/*")):
        if not manifest.is_file():
            continue
        name = _display(*manifest.relative_to(root / "manifests").parts)
        try:
            found.append((name, _from_manifest(root, manifest, name)))
        except ModelNotFoundError as exc:
            found.append((name, exc))
    return found


def lmstudio_root() -> Path:
    """Where LM Studio keeps models: its settings' `downloadsFolder`, else its home's `models`."""
    pointer = Path.home() / ".lmstudio-home-pointer"  # LM Studio's own record of a moved home
    home = Path((_read_text(pointer) or "").strip() or Path.home() / ".lmstudio").expanduser()
    try:
        folder = json.loads((home / "settings.json").read_text()).get("downloadsFolder")
    except (OSError, ValueError, AttributeError):
        folder = None
    if isinstance(folder, str) and folder:
        return Path(folder).expanduser()
    legacy = Path.home() / ".cache" / "lm-studio" / "models"
    return legacy if not (home / "models").is_dir() and legacy.is_dir() else home / "models"


def _ggufs(folder: Path) -> list[Path]:
    # Vision projectors (mmproj-*.gguf) sit beside the model; they are not a language model.
    return sorted(p for p in folder.glob("*.gguf") if p.is_file() and not p.name.lower().startswith("mmproj"))


def lmstudio_model(name: str, root: Path | None = None) -> Path:
    """`publisher/repo[/file.gguf]` → a GGUF file or an MLX model directory."""
    root = root or lmstudio_root()
    ref = f"lmstudio:{name}"
    parts = name.split("/")
    if len(parts) not in (2, 3):
        raise ModelNotFoundError(f"{ref!r} is not an LM Studio name (publisher/repo or publisher/repo/file.gguf)")
    publisher, repo = _checked(parts[0], "publisher", ref), _checked(parts[1], "repo", ref)
    folder = root / publisher / repo
    if not folder.is_dir():
        raise ModelNotFoundError(f"{ref} is not in LM Studio's models folder ({root})")
    if len(parts) == 3:
        if not _FILE.match(parts[2]) or ".." in parts[2] or not (folder / parts[2]).is_file():
            raise ModelNotFoundError(f"{ref}: no GGUF file {parts[2]!r} in {folder}")
        return folder / parts[2]
    if (folder / "config.json").is_file():
        return folder
    files = _ggufs(folder)
    if len(files) != 1:
        listed = ", ".join(f"lmstudio:{publisher}/{repo}/{f.name}" for f in files) or "none"
        raise ModelNotFoundError(f"{ref} holds {len(files)} GGUF files; name one: {listed}")
    return files[0]


def lmstudio_models(root: Path | None = None) -> list[tuple[str, Path]]:
    """(reference name, path) of every MLX directory and GGUF file in the folder."""
    root = root or lmstudio_root()
    found: list[tuple[str, Path]] = []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        name = f"{folder.parent.name}/{folder.name}"
        if (folder / "config.json").is_file():
            found.append((name, folder))
            continue
        files = _ggufs(folder)
        found += [(name if len(files) == 1 else f"{name}/{f.name}", f) for f in files]
    return found
