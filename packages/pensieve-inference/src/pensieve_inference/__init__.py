"""The MLX generation engine on mlx-lm."""

from .engine import MLXEngine, sampler_args
from .prompt import BILLING_PREFIX, PromptRenderer, chat_messages
from .stops import StopSequenceMatcher
from .worker import GenerationJob, GenerationWorker

__all__ = [
    "BILLING_PREFIX",
    "GenerationJob",
    "GenerationWorker",
    "MLXEngine",
    "PromptRenderer",
    "StopSequenceMatcher",
    "chat_messages",
    "sampler_args",
]
