"""The MLX generation engine on mlx-lm."""

from .conversation import BILLING_PREFIX, build_conversation
from .engine import MLXEngine, sampler_args
from .prompt import PromptRenderer, RenderedPrompt, offered_tools
from .stops import StopSequenceMatcher
from .tool_calls import ToolCallSplitter
from .jobs import GenerationJob
from .worker import GenerationWorker

__all__ = [
    "BILLING_PREFIX",
    "GenerationJob",
    "GenerationWorker",
    "MLXEngine",
    "PromptRenderer",
    "RenderedPrompt",
    "StopSequenceMatcher",
    "ToolCallSplitter",
    "build_conversation",
    "offered_tools",
    "sampler_args",
]
