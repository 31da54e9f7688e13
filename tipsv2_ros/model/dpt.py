# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""DPT decoder and the depth, normals and segmentation heads built on it.

Mirrors tips/pytorch/decoders.py@4db271d (``PreActResidualConvUnit``, ``FeatureFusionBlock``,
``ReassembleBlocks``, ``DPTHead``, ``Decoder`` and its task subclasses). Attribute names equal
the PyTorch keys the official loader produces from the Scenic ``*_dpt.zip`` files. As in the
official code (and the Scenic reference), no activation follows ``project``; transformers'
``Tipsv2Dpt`` adds a ReLU there for depth (see tests/test_hf_layout.py).

The output grid is 8x the patch grid when the grid has even sides (256x256 for a 448x448
input); in general it is 16 * ceil(h / 2) by 16 * ceil(w / 2), because the deepest level is
downsampled with a stride-2 convolution and each fusion step doubles its input.
"""
from typing import Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from tipsv2_ros.model.config import DPTConfig
from tipsv2_ros.model.vision import Intermediate


class PreActResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 bias-free convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


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
            x = x + self.residual_unit(residual)
        x = self.main_unit(x)
        x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)
        return self.out_conv(x)


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
            batch, dim, height, width = patches.shape
            tokens = patches.flatten(2).transpose(1, 2)  # (B, h*w, D)
            readout = cls[:, None, :].expand(-1, tokens.shape[1], -1)  # (B, h*w, D)
            tokens = self.readout_projects[index](torch.cat([tokens, readout], dim=-1))
            # Scenic's flax.linen.gelu defaults to the tanh approximation.
            tokens = F.gelu(tokens, approximate='tanh')
            x = tokens.transpose(1, 2).reshape(batch, dim, height, width)  # (B, D, h, w)
            levels.append(self.resize_layers[index](self.out_projections[index](x)))
        return levels


class DPTDecoder(nn.Module):
    """Reassemble, 3x3 ``convs`` to ``channels``, fuse from the deepest level, ``project``."""

    def __init__(self, embed_dim: int, channels: int, post_process_channels: Sequence[int]
                 ) -> None:
        super().__init__()
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
        return self.project(x)


class DenseHead(nn.Module):
    """A DPT decoder plus a per-pixel linear ``head``; the task heads differ only after it."""

    def __init__(self, out_channels: int, embed_dim: int, cfg: DPTConfig) -> None:
        super().__init__()
        self.dpt = DPTDecoder(embed_dim, cfg.channels, cfg.post_process_channels)
        self.head = nn.Linear(cfg.channels, out_channels)

    def logits(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        """Per-pixel head outputs (B, out_channels, H', W')."""
        features = self.dpt(intermediates).permute(0, 2, 3, 1)  # (B, H', W', C)
        return self.head(features).permute(0, 3, 1, 2)  # (B, out, H', W')

    def forward(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        return self.logits(intermediates)


class DepthHead(DenseHead):
    """Metric depth as the expectation over ``depth_bins`` uniformly spaced bins."""

    def __init__(self, embed_dim: int, cfg: DPTConfig) -> None:
        super().__init__(cfg.depth_bins, embed_dim, cfg)
        self.min_depth = cfg.min_depth
        # Not stored in the released files (the loaders add it); persistent like the official.
        self.register_buffer('bin_centers', bin_centers(cfg))

    def forward(self, intermediates: Sequence[Intermediate]) -> torch.Tensor:
        """Return depth in metres, (B, 1, H', W')."""
        # relu + shift, then a linear normalisation over bins (not a softmax).
        weights = F.relu(self.logits(intermediates)) + self.min_depth
        probs = weights / weights.sum(dim=1, keepdim=True)
        return torch.einsum('bchw,c->bhw', probs, self.bin_centers.to(probs))[:, None]


class NormalsHead(DenseHead):
    """Raw (unnormalised) surface-normal 3-vectors, (B, 3, H', W')."""

    def __init__(self, embed_dim: int, cfg: DPTConfig) -> None:
        super().__init__(3, embed_dim, cfg)


class SegmentationHead(DenseHead):
    """Closed-vocabulary (ADE20K) class logits, (B, classes, H', W')."""

    def __init__(self, embed_dim: int, cfg: DPTConfig) -> None:
        super().__init__(cfg.segmentation_classes, embed_dim, cfg)


HEADS = {'depth': DepthHead, 'normals': NormalsHead, 'segmentation': SegmentationHead}


def bin_centers(cfg: DPTConfig) -> torch.Tensor:
    """Depth bin centres in metres: ``linspace(min_depth, max_depth, depth_bins)``."""
    # Computed on the CPU even inside a ``torch.device('meta')`` context: linspace has no cheap
    # meta kernel, and the values are needed anyway.
    return torch.linspace(cfg.min_depth, cfg.max_depth, cfg.depth_bins, device='cpu')
