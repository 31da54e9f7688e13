# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""DPT decoder and the depth, normals and segmentation heads built on it.

Mirrors tips/pytorch/decoders.py@4db271d (``PreActResidualConvUnit``, ``FeatureFusionBlock``,
``ReassembleBlocks``, ``DPTHead``, ``Decoder`` and its task subclasses). Attribute names equal
the PyTorch keys the official loader produces from the Scenic ``*_dpt.zip`` files. As in the
official code (and the Scenic reference), no activation follows ``project`` by default;
transformers' ``Tipsv2Dpt`` adds a ReLU there for depth (``depth_decoder_activation``), which
``DPTConfig.depth_activation='relu'`` reproduces (see tests/test_hf_layout.py).

The output grid is 8x the patch grid when the grid has even sides (256x256 for a 448x448
input); in general it is 16 * ceil(h / 2) by 16 * ceil(w / 2), because the deepest level is
downsampled with a stride-2 convolution and each fusion step doubles its input.

Three rewrites give the official results (to float rounding) with less work; the benchmark
(``tipsv2 bench``) shows their effect:

- the readout projection of ``[patch, cls]`` is split into a patch half and a cls half, and
  the cls half (the same for every patch) is computed once per image instead of per patch;
- each fusion block's 1x1 ``out_conv`` runs before the 2x bilinear upsampling instead of after
  it: both are linear per pixel and the interpolation weights sum to one, so they commute,
  and the convolution costs a quarter at the lower resolution;
- tensors are channels-last (NHWC in memory) from the tokens on, so that 1x1 convolutions and
  the per-pixel ``head`` are plain matrix products without transposing copies, and 3x3
  convolutions avoid layout reorders when the weights are channels-last as well (see
  ``channels_last``).
"""
from typing import Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from tipsv2_ros.model.config import DPTConfig
from tipsv2_ros.model.vision import Intermediate


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1x1 ``conv`` as a matrix product over the pixels: (B, Cin, H, W) -> (B, Cout, H, W).

    On a channels-last input the pixels are already rows of a matrix, so this is one GEMM with
    no layout change (PyTorch's own 1x1 path on one CPU thread unfolds and copies instead);
    the result is channels-last. Exported graphs keep the convolution: ONNX Runtime and
    TensorRT run NCHW convolutions natively, and the permutes would become copies there.
    """
    if torch.compiler.is_compiling():  # torch.export / torch.onnx.export(dynamo=True)
        return conv(x)
    pixels = x.permute(0, 2, 3, 1)  # (B, H, W, Cin), contiguous for channels-last x
    return F.linear(pixels, conv.weight.flatten(1), conv.bias).permute(0, 3, 1, 2)


class PreActResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 bias-free convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The outer ReLU must not touch x (the skip path); the rest works in place on fresh
        # tensors, which saves two passes over maps of up to 256 x 128 x 128 floats.
        return self.conv2(F.relu_(self.conv1(F.relu(x)))).add_(x)


class FeatureFusionBlock(nn.Module):
    """Adds the refined skip level (blocks 1-3), refines, upsamples 2x, projects 1x1."""

    def __init__(self, channels: int, has_residual: bool) -> None:
        super().__init__()
        if has_residual:
            self.residual_unit = PreActResidualConvUnit(channels)
        self.main_unit = PreActResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if residual is not None:
            if residual.shape != x.shape:
                # Odd patch grids: the upsampled deeper level is one row/column larger.
                residual = F.interpolate(residual, size=x.shape[2:], mode='bilinear',
                                         align_corners=False)
            x = self.residual_unit(residual).add_(x)
        x = self.main_unit(x)
        # The official order is upsample, then out_conv. A 1x1 convolution and a bilinear
        # upsampling commute (both are linear per pixel and the interpolation weights sum to
        # one, so the bias passes through), and the convolution is 4x cheaper before it.
        x = pointwise(self.out_conv, x)
        return F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)


class ReassembleBlocks(nn.Module):
    """Turns four token maps into a 4x, 2x, 1x and 0.5x pyramid of the patch grid."""

    def __init__(self, embed_dim: int, out_channels: Sequence[int]) -> None:
        super().__init__()
        self.out_projections = nn.ModuleList(nn.Conv2d(embed_dim, ch, 1) for ch in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
        ])
        self.readout_projects = nn.ModuleList(
            nn.Linear(2 * embed_dim, embed_dim) for _ in out_channels)

    def forward(self, intermediates: Sequence[Intermediate]) -> list[torch.Tensor]:
        levels = []
        for index, (patches, cls) in enumerate(intermediates):
            dim = patches.shape[1]
            tokens = patches.permute(0, 2, 3, 1)  # (B, h, w, D), a view of the encoder output
            # The official Linear over [patch, cls] is patch @ W_p.T + (cls @ W_c.T + b); the
            # cls half is the same for every patch, so it is computed once, not h*w times.
            project = self.readout_projects[index]
            readout = F.linear(cls, project.weight[:, dim:], project.bias)  # (B, D)
            tokens = F.linear(tokens, project.weight[:, :dim]).add_(readout[:, None, None])
            # Scenic's flax.linen.gelu defaults to the tanh approximation.
            tokens = F.gelu(tokens, approximate='tanh')
            x = pointwise(self.out_projections[index], tokens.permute(0, 3, 1, 2))
            levels.append(self.resize_layers[index](x))
        return levels


class DPTDecoder(nn.Module):
    """Reassemble, 3x3 ``convs`` to ``channels``, fuse from the deepest level, ``project``."""

    def __init__(self, embed_dim: int, channels: int, post_process_channels: Sequence[int],
                 output_relu: bool = False) -> None:
        super().__init__()
        self.output_relu = output_relu
        if len(post_process_channels) != 4:
            raise ValueError('the DPT decoder reads exactly four intermediate layers')
        self.reassemble = ReassembleBlocks(embed_dim, post_process_channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(ch, channels, 3, padding=1, bias=False) for ch in post_process_channels)
        self.fusion_blocks = nn.ModuleList(
            FeatureFusionBlock(channels, has_residual=index > 0) for index in range(4))
        self.project = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        """Return dense features (B, channels, H', W') at the decoder's native resolution."""
        levels = [conv(level) for conv, level in zip(self.convs, self.reassemble(intermediates))]
        x = self.fusion_blocks[0](levels[3])
        for index in range(1, 4):
            x = self.fusion_blocks[index](x, levels[3 - index])
        x = self.project(x)
        return F.relu_(x) if self.output_relu else x


class DenseHead(nn.Module):
    """A DPT decoder plus a per-pixel linear ``head``; the task heads differ only after it."""

    def __init__(self, out_channels: int, embed_dim: int, cfg: DPTConfig,
                 output_relu: bool = False) -> None:
        super().__init__()
        self.dpt = DPTDecoder(embed_dim, cfg.channels, cfg.post_process_channels, output_relu)
        self.head = nn.Linear(cfg.channels, out_channels)

    def pixel_logits(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        """Per-pixel head outputs, channels last: (B, H', W', out_channels)."""
        return self.head(self.dpt(intermediates).permute(0, 2, 3, 1))

    def logits(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        """Per-pixel head outputs (B, out_channels, H', W') (channels-last in memory)."""
        return self.pixel_logits(intermediates).permute(0, 3, 1, 2)

    def forward(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        return self.logits(intermediates)


class DepthHead(DenseHead):
    """Metric depth as the expectation over ``depth_bins`` uniformly spaced bins."""

    def __init__(self, embed_dim: int, cfg: DPTConfig) -> None:
        super().__init__(cfg.depth_bins, embed_dim, cfg, cfg.depth_activation == 'relu')
        self.min_depth = cfg.min_depth
        # Not stored in the released files (the loaders add it); persistent like the official.
        self.register_buffer('bin_centers', bin_centers(cfg))

    def forward(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        """Return depth in metres, (B, 1, H', W')."""
        # relu + shift, then a linear normalisation over bins (not a softmax). The expectation
        # sum(w * c) / sum(w) takes one (bins x 2) product instead of normalising all bins.
        weights = F.relu_(self.pixel_logits(intermediates)).add_(self.min_depth)
        centers = self.bin_centers.to(weights)
        moments = weights @ torch.stack([centers, torch.ones_like(centers)], dim=1)
        return (moments[..., 0] / moments[..., 1])[:, None]  # (B, 1, H', W')


class NormalsHead(DenseHead):
    """Raw (unnormalised) surface-normal 3-vectors, (B, 3, H', W')."""

    def __init__(self, embed_dim: int, cfg: DPTConfig) -> None:
        super().__init__(3, embed_dim, cfg)


class SegmentationHead(DenseHead):
    """Closed-vocabulary (ADE20K) class logits, (B, classes, H', W')."""

    def __init__(self, embed_dim: int, cfg: DPTConfig) -> None:
        super().__init__(cfg.segmentation_classes, embed_dim, cfg)


def bin_centers(cfg: DPTConfig) -> torch.Tensor:
    """Depth bin centres in metres: ``linspace(min_depth, max_depth, depth_bins)``."""
    # Computed on the CPU even inside a ``torch.device('meta')`` context: linspace has no cheap
    # meta kernel, and the values are needed anyway.
    return torch.linspace(cfg.min_depth, cfg.max_depth, cfg.depth_bins, device='cpu')
