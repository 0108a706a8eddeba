"""The MLX generation engine on mlx-lm."""

from .conversation import BILLING_PREFIX, build_conversation
from .disk_cache import DiskEntry
from .disk_cache import clear as clear_disk_cache
from .disk_cache import list_entries as list_disk_entries
from .disk_cache import verify_entry as verify_disk_entry
from .engine import MLXEngine
from .jobs import GenerationJob
from .lockstep import Lockstep, RankInfo
from .options import EngineOptions
from .prompt import PromptRenderer, RenderedPrompt, offered_tools
from .sampling import sampler_args
from .speculative import load_draft
from .stops import StopSequenceMatcher
from .tool_stream import ToolCallStream
from .worker import GenerationWorker

__all__ = [
    "BILLING_PREFIX",
    "DiskEntry",
    "EngineOptions",
    "GenerationJob",
    "GenerationWorker",
    "Lockstep",
    "MLXEngine",
    "PromptRenderer",
    "RankInfo",
    "RenderedPrompt",
    "StopSequenceMatcher",
    "ToolCallStream",
    "build_conversation",
    "clear_disk_cache",
    "list_disk_entries",
    "load_draft",
    "offered_tools",
    "sampler_args",
    "verify_disk_entry",
]
