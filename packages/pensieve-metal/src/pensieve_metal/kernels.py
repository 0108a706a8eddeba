"""Kernel choices MLX leaves to its user, made for a server on the device it runs on."""

from __future__ import annotations

import os

from .device import DeviceKind, device_kind

# MLX's switch for cuDNN's fused attention on CUDA (queries of more than one token).
CUDNN_ATTENTION = "MLX_CUDA_USE_CUDNN_SDPA"


def avoid_per_shape_attention(kind: DeviceKind | None = None) -> bool:
    """On CUDA, MLX sends attention over several query tokens to cuDNN, which builds a graph for
    each new (query length, key length): a server meets new ones at nearly every request and
    every speculative pass, each costing 0.2-1 s. So pensieve turns it off unless the user set
    it (H200, docs/performance.md: one stream with prompt lookup 47 -> 227 tok/s; an 8K cold
    prefill 0.46 -> 0.65 s once cuDNN's graphs are built). True when it turned it off."""
    if (kind or device_kind()) != "cuda" or CUDNN_ATTENTION in os.environ:
        return False
    os.environ[CUDNN_ATTENTION] = "0"  # read by MLX when it first meets such an attention
    return True
