# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Analytic FLOP counts (1 multiply-add = 2 FLOP) and the machine's matmul rate.

Only matrix products and convolutions are counted; normalisations, activations, softmax and
resampling are memory-bound and left out, as in docs/benchmark.md. The counts are those of
the official architecture (google-deepmind/tips@4db271d), so a faster formulation of the
same maths (see model/dpt.py) shows up as a lower ratio to the bound, not as fewer FLOPs.

Encoder, per block, with N = 1 + R + h*w tokens, width D, MLP hidden H::

    2*N*D*3D (qkv) + 2*N*N*D (q k^T) + 2*N*N*D (attention x v) + 2*N*D*D (proj)
    + 4*N*D*H (fc1, fc2; SwiGLU: 6*N*D*H)

which is 24*N*D^2 + 4*N^2*D for H = 4D; plus the patch embedding 2*h*w*(3*p*p)*D. For B/14
at 448x448 (N = 1026) that is 214.0 GFLOP, as torch.utils.flop_counter counts on the
official modules (docs/benchmark.md).

DPT head: readout Linear 2D -> D per level, the 1x1 out-projections, the resize (transposed)
convolutions, the 3x3 ``convs``, per fusion block two (three with a skip) 3x3 residual
units of two convolutions plus a 1x1 ``out_conv`` at the upsampled size, ``project`` (3x3)
and the per-pixel ``head`` Linear (plus, for depth, the expectation over the bins: 2 * bins
per pixel). A convolution costs 2 * H_out * W_out * C_out * C_in *
k * k; a transposed convolution with kernel = stride k costs 2 * H_in * W_in * C_in * C_out
* k * k.
"""
import time
from typing import Sequence

import torch

from tipsv2_ros.model.config import ModelConfig


def encoder_flops(cfg: ModelConfig, input_size: Sequence[int]) -> float:
    """Return the FLOPs of one image through the ViT blocks and the patch embedding."""
    vision = cfg.vision
    h, w = input_size[0] // vision.patch_size, input_size[1] // vision.patch_size
    tokens = 1 + vision.num_register_tokens + h * w
    dim, hidden = vision.embed_dim, vision.mlp_hidden_dim
    mlp = (6 if vision.ffn == 'swiglu' else 4) * tokens * dim * hidden
    block = 8 * tokens * dim * dim + 4 * tokens * tokens * dim + mlp
    patch_embed = 2 * h * w * 3 * vision.patch_size ** 2 * dim
    return float(vision.depth * block + patch_embed)


def _conv(h: int, w: int, c_in: int, c_out: int, k: int) -> int:
    return 2 * h * w * c_in * c_out * k * k


HEAD_OUTPUTS = {'depth': lambda cfg: cfg.dpt.depth_bins, 'normals': lambda cfg: 3,
                'segmentation': lambda cfg: cfg.dpt.segmentation_classes}


def dpt_head_flops(cfg: ModelConfig, input_size: Sequence[int], task: str) -> float:
    """Return the FLOPs of one DPT head (decoder + per-pixel Linear) of ``task``, one image."""
    out_channels = HEAD_OUTPUTS[task](cfg)
    patch = cfg.vision.patch_size
    h, w = input_size[0] // patch, input_size[1] // patch
    dim, channels = cfg.vision.embed_dim, cfg.dpt.channels
    post = cfg.dpt.post_process_channels
    total = 0
    # Reassemble: readout Linear over [patch, cls], 1x1 projection, resize to 4x/2x/1x/0.5x.
    half = (-(-h // 2), -(-w // 2))
    sizes = [(4 * h, 4 * w), (2 * h, 2 * w), (h, w), half]
    for level, ch in enumerate(post):
        total += 2 * h * w * 2 * dim * dim + _conv(h, w, dim, ch, 1)
        if level == 0:
            total += _conv(h, w, ch, ch, 4)
        elif level == 1:
            total += _conv(h, w, ch, ch, 2)
        elif level == 3:
            total += _conv(*half, ch, ch, 3)
    # 3x3 convs to `channels` at each level's size.
    total += sum(_conv(*size, ch, channels, 3) for size, ch in zip(sizes, post))
    # Fusion from the deepest level; each block doubles its input grid.
    grid = half
    for index in range(4):
        units = 2 if index else 1
        total += units * 2 * _conv(*grid, channels, channels, 3)
        grid = (2 * grid[0], 2 * grid[1])
        total += _conv(*grid, channels, channels, 1)  # out_conv after the upsampling
    total += _conv(*grid, channels, channels, 3)  # project
    total += 2 * grid[0] * grid[1] * channels * out_channels  # per-pixel head Linear
    if task == 'depth':
        total += 2 * grid[0] * grid[1] * out_channels  # expectation over the bins
    return float(total)


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                repeats: int = 3) -> float:
    """Return the FLOP/s of the best of ``repeats`` (size x size) @ (size x size) products."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    cuda = torch.device(device).type == 'cuda'
    best = float('inf')
    with torch.inference_mode():
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            torch.matmul(a, b)
            if cuda:
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best
