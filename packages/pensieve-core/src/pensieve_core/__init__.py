"""Pensieve's protocols, error tree and configuration."""

from . import errors
from .config import DEFAULT_API_KEY, DEFAULT_MODEL, Settings, load_settings
from .engine import (
    Engine,
    Failed,
    Finished,
    GenerationEvent,
    GenerationRequest,
    ModelCard,
    Started,
    TextDelta,
    ThinkingDelta,
    ThinkingEnd,
    ToolInputDelta,
    ToolUseEnd,
    ToolUseStart,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MODEL",
    "Engine",
    "Failed",
    "Finished",
    "GenerationEvent",
    "GenerationRequest",
    "ModelCard",
    "Settings",
    "Started",
    "TextDelta",
    "ThinkingDelta",
    "ThinkingEnd",
    "ToolInputDelta",
    "ToolUseEnd",
    "ToolUseStart",
    "errors",
    "load_settings",
]
