"""Kernel choices MLX leaves to its user, made for a server on the device it runs on."""

from __future__ import annotations

import os
import re
from pathlib import Path

import mlx.core as mx

from .device import DeviceKind, device_info, device_kind

# MLX's switch for cuDNN's fused attention on CUDA (queries of more than one token).
CUDNN_ATTENTION = "MLX_CUDA_USE_CUDNN_SDPA"
# Where MLX's CUDA build keeps the kernels it compiles at first use (default: the temp dir).
COMPILED_KERNELS = "MLX_PTX_CACHE_DIR"


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


def keep_compiled_kernels(root: Path, kind: DeviceKind | None = None) -> Path | None:
    """On CUDA, MLX compiles kernels with NVRTC at first use and keeps them under
    /tmp/mlx/<version>/ptx, which a reboot or a fresh container empties; then the first request
    waits for the compiles again (~50 s on the H200 for the first generation of a 4-bit Phi-3-mini
    shape, ~1 s once they were kept). So pensieve keeps them under `root`, a folder per MLX version
    and GPU (a kernel built for one architecture must not load on another), unless the user set
    MLX_PTX_CACHE_DIR. Call before the first kernel compiles: MLX reads the variable once. Returns
    the folder it set."""
    if (kind or device_kind()) != "cuda" or COMPILED_KERNELS in os.environ:
        return None
    gpu = re.sub(r"[^A-Za-z0-9._-]+", "-", device_info().name).strip("-") or "gpu"
    folder = root / f"mlx-{getattr(mx, '__version__', 'unknown')}" / gpu  # MLX's stubs omit it
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[COMPILED_KERNELS] = str(folder)
    return folder
