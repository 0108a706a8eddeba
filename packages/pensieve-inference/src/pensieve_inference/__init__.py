"""The MLX generation engine on mlx-lm."""

from .conversation import BILLING_PREFIX, build_conversation
from .engine import MLXEngine
from .sampling import sampler_args
from .prompt import PromptRenderer, RenderedPrompt, offered_tools
from .stops import StopSequenceMatcher
from .tool_stream import ToolCallStream
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
    "ToolCallStream",
    "build_conversation",
    "offered_tools",
    "sampler_args",
]
