"""Settings, layered: defaults < JSON file < PENSIEVE_* environment < command-line flags."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from .errors import ConfigError

DEFAULT_API_KEY = "pensieve-local-key"
DEFAULT_MODEL = "phi-3-mini"
ENV_PREFIX = "PENSIEVE_"
_ERROR_PATH = re.compile(r"at `\$\.(\w+)")
# Claude Code's model tiers: each may be served by its own configured model (`<tier>_model`).
CLAUDE_TIERS = ("opus", "sonnet", "haiku")
# KV-cache bit widths offered: mlx-lm's QuantizedKVCache sizes its rows for widths that divide 32
# (3, 5 and 6 break on a head dim of 128); 2 is left out, as mlx-lm's server suggests 4 or 8.
KV_BITS = (8, 4)


def default_home() -> Path:
    return Path(os.environ.get("PENSIEVE_HOME") or Path.home() / ".pensieve")


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 7777
    api_key: str = DEFAULT_API_KEY
    model: str = DEFAULT_MODEL
    home: str = ""
    # Fallback served when the configured model is neither cached nor downloadable.
    fallback_model: str = "smollm2-135m"
    log_level: str = "info"
    # Server-wide cap on generated tokens per request (None: only the context limits it).
    max_output_tokens: int | None = None
    # Models for Claude's tiers: requests for claude-*-opus/sonnet/haiku names go here
    # (unset: the main model).
    opus_model: str | None = None
    sonnet_model: str | None = None
    haiku_model: str | None = None
    # A ping goes out on a stream whenever the model is silent this long (long prefills).
    keepalive_seconds: float = 10.0
    # Refuse model names that no served model answers to, instead of using the main model.
    strict_model_names: bool = False
    # Host headers accepted besides loopback names (DNS-rebinding defence) and the bind host.
    allowed_hosts: list[str] = []
    # Browser origins allowed to call the API (CORS); none by default.
    allowed_origins: list[str] = []
    max_body_bytes: int = 32 * 1024 * 1024
    certfile: str | None = None
    keyfile: str | None = None
    # Prefix KV cache across requests, in bytes (0 turns it off; unset: a quarter of the
    # memory the weights leave), and entries.
    prefix_cache_bytes: int | None = None
    prefix_cache_entries: int = 8
    # System prompts' caches kept on disk (under home/prefix-cache) for restarts; 0 turns it off.
    prefix_cache_disk_bytes: int = 8 * 1024**3
    # Sequences decoded together in one batch (per model); more wait in the queue.
    max_concurrent_sequences: int = 16
    # Requests waiting beyond those decoding; past this, 529 overloaded_error.
    max_queued_requests: int = 64
    # On SIGTERM: how long in-flight requests may run before the server exits anyway.
    shutdown_timeout: float = 30.0
    # How a request decoding alone decodes: "prompt_lookup" drafts tokens from its own prompt and
    # output (an answer that copies text it was shown goes several tokens a step), "draft" from
    # `draft_model` (a small model sharing the vocabulary), "off" one token a step; "auto" is
    # prompt_lookup on a GPU, off on a CPU (measured not to pay there).
    speculative: Literal["auto", "off", "prompt_lookup", "draft"] = "auto"
    draft_model: str | None = None
    # Keys and values kept in this many bits (4 or 8; unset: the weights' float type), for long
    # contexts in less memory. A model's requests then decode one at a time, as mlx-lm's server
    # does: its batching cannot merge quantized caches. Speculation is off; nothing goes to disk.
    kv_bits: int | None = None
    # One model across several processes or machines (MLX's distributed engine): a hostfile in
    # mlx.launch's format, rank 0 first (this machine, which serves the API); the backend as
    # mlx.launch names it; layers in a pipeline instead of tensor-parallel; how long one worker
    # turn may take before the group counts a rank as hung.
    hostfile: str | None = None
    backend: Literal["ring", "jaccl", "jaccl-ring", "nccl"] = "ring"
    pipeline: bool = False
    rank_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.home:
            self.home = str(default_home())
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, got {self.port}")
        if not self.api_key:
            raise ConfigError("api_key must not be empty")
        if (self.certfile is None) != (self.keyfile is None):
            raise ConfigError("TLS needs both certfile and keyfile")
        if self.max_concurrent_sequences < 1:
            raise ConfigError(f"max_concurrent_sequences must be at least 1, got {self.max_concurrent_sequences}")
        if self.speculative == "draft" and not self.draft_model:
            raise ConfigError('speculative "draft" needs a draft_model')
        if self.kv_bits is not None and self.kv_bits not in KV_BITS:
            raise ConfigError(f"kv_bits must be 4 or 8 (or unset for a full-precision cache), got {self.kv_bits}")
        if self.kv_bits is not None and self.speculative in ("prompt_lookup", "draft"):
            raise ConfigError(
                f'kv_bits decodes without speculation: speculative must be "auto" or "off", not "{self.speculative}"'
            )
        if self.rank_timeout_s <= 0:
            raise ConfigError(f"rank_timeout_s must be positive, got {self.rank_timeout_s}")
        if self.max_output_tokens is not None and self.max_output_tokens < 1:
            raise ConfigError(f"max_output_tokens must be at least 1, got {self.max_output_tokens}")

    def tier_model(self, tier: str) -> str:
        """The model reference configured for a Claude tier (opus, sonnet, haiku)."""
        return getattr(self, f"{tier}_model", None) or self.model

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser()

    def config_path(self) -> Path:
        return self.home_path / "config.json"

    @property
    def prefix_cache_dir(self) -> Path:
        return self.home_path / "prefix-cache"

    @property
    def converted_dir(self) -> Path:
        # GGUF weights converted to MLX's format, kept so a file is converted once.
        return self.home_path / "converted"

    @property
    def kernels_dir(self) -> Path:
        # Kernels MLX's CUDA build compiles at first use, kept so a restart does not compile them again.
        return self.home_path / "kernels"


SETTING_NAMES: tuple[str, ...] = Settings.__struct_fields__
LIST_FIELDS = frozenset({"allowed_hosts", "allowed_origins"})


def check_setting_name(name: str) -> None:
    if name not in SETTING_NAMES:
        raise ConfigError(f"unknown setting {name!r}; settings: {', '.join(SETTING_NAMES)}")


def parse_setting(name: str, raw: str) -> Any:
    """A setting from text (environment, `pensieve config set`): lists are comma-separated;
    the rest is converted by `Settings` itself."""
    check_setting_name(name)
    if name in LIST_FIELDS:
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: parse_setting(name, environ[ENV_PREFIX + name.upper()])
        for name in SETTING_NAMES
        if ENV_PREFIX + name.upper() in environ
    }


def read_config_file(path: Path) -> dict[str, Any]:
    """The JSON object a config file holds ({} when there is none)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def load_settings(
    flags: Mapping[str, Any] | None = None, *, config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge the layers; the file is `<home>/config.json` unless one is named."""
    environ = os.environ if environ is None else environ
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = _from_env(environ)
    home = flags.get("home") or env.get("home")
    if config_file is None:
        base = Path(home).expanduser() if home else default_home()
        config_file = Path(environ.get(ENV_PREFIX + "CONFIG", base / "config.json"))
    merged = {**read_config_file(config_file), **env, **flags}
    try:
        # strict=False lets environment strings like "8080" become ints.
        return msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration ({_source(str(exc), flags, env, config_file)}): {exc}") from exc


def _source(error: str, flags: Mapping[str, Any], env: Mapping[str, Any], config_file: Path) -> str:
    """Which layer gave the value msgspec refused (its error ends "at `$.name`")."""
    name = match.group(1) if (match := _ERROR_PATH.search(error)) else ""
    if name in flags:
        return f"--{name.replace('_', '-')}"
    if name in env:
        return f"environment variable {ENV_PREFIX}{name.upper()}"
    return str(config_file)
