# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""TIPSv2 image encoder.

Mirrors tips/pytorch/image_encoder.py@4db271d (``VisionTransformer``: token preparation,
``interpolate_pos_encoding``, ``forward``, ``get_intermediate_layers``) and the value-trick
features of tips/pytorch/TIPS_zeroshot_segmentation.ipynb@4db271d. Attribute names equal the
keys of the official ``tips_v2_oss_*_vision.npz`` files, so loading is a strict
``load_state_dict``.
"""
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from tipsv2_ros.model.config import VisionConfig
from tipsv2_ros.model.layers import Block, PatchEmbed


class ImageTokens(NamedTuple):
    """The encoder's final-normed tokens."""

    cls_first: torch.Tensor  # (B, 1, D) 1st CLS, aligned with alt-text captions
    cls_second: torch.Tensor  # (B, 1, D) register token, aligned with synthetic captions
    patch_tokens: torch.Tensor  # (B, h*w, D), row-major over the patch grid


class Intermediate(NamedTuple):
    """One ViT block output as the DPT decoder reads it (after the final ``norm``)."""

    patches: torch.Tensor  # (B, D, h, w)
    cls: torch.Tensor  # (B, D), the 1st CLS token


class DenseFeatures(NamedTuple):
    """Everything the dense heads need from one pass over the ViT blocks."""

    intermediates: tuple[Intermediate, ...]
    value_tokens: Optional[torch.Tensor]  # (B, h, w, D) value-trick patch tokens, normed


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a (1, 1 + G*G, D) positional table to a (h, w) patch grid.

    Bilinear with antialiasing, ``align_corners=False``, no DINOv2 +0.1 offset, computed in
    float32; the CLS entry is kept as is. Antialiasing is not exportable, so exported graphs
    get this result baked in as a constant (see ``image_path.py``).

    Returns:
        The (1, 1 + h*w, D) table in the dtype of ``pos_embed``.
    """
    stored = pos_embed.shape[1] - 1
    side = int(round(stored ** 0.5))
    if side * side != stored:
        raise ValueError(f'positional table with {stored} patch entries is not square')
    if tuple(grid) == (side, side):
        return pos_embed  # the official early return: no resampling at the stored size
    dim = pos_embed.shape[-1]
    table = pos_embed.float()
    patch_table = table[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, D, G, G)
    patch_table = F.interpolate(patch_table, size=tuple(grid), mode='bilinear',
                                align_corners=False, antialias=True)
    patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, -1, dim)  # (1, h*w, D)
    return torch.cat([table[:, :1], patch_table], dim=1).to(pos_embed.dtype)


class VisionTransformer(nn.Module):
    """DINOv2-style ViT: tokens ``[CLS, REG, patches]``, pre-norm blocks, final LayerNorm."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pos_grid ** 2, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim))
        # Unused at inference; kept because the official checkpoints store it.
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.patch_embed = PatchEmbed(dim, cfg.patch_size)
        self.blocks = nn.ModuleList([
            Block(dim, cfg.num_heads, cfg.mlp_hidden_dim, cfg.ffn, cfg.ln_eps)
            for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(dim, eps=cfg.ln_eps)

    def grid_size(self, image_size: Sequence[int]) -> tuple[int, int]:
        """Return the patch grid (h, w) for an (H, W) input."""
        return image_size[0] // self.cfg.patch_size, image_size[1] // self.cfg.patch_size

    def pos_embed_for(self, image_size: Sequence[int]) -> torch.Tensor:
        """Return the positional table for an (H, W) input: (1, 1 + h*w, D)."""
        return interpolate_pos_embed(self.pos_embed, self.grid_size(image_size))

    def prepare_tokens(self, pixel_values: torch.Tensor,
                       pos_embed: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Embed patches and add the CLS and register tokens: (B, 1 + R + h*w, D).

        Args:
            pixel_values: (B, 3, H, W) RGB in [0, 1] (no mean/std normalisation).
            pos_embed: a precomputed table for this input size (an exported graph bakes it);
                computed from ``self.pos_embed`` when omitted.
        """
        if pos_embed is None:
            pos_embed = self.pos_embed_for(pixel_values.shape[-2:])
        patches = self.patch_embed(pixel_values)  # (B, h*w, D)
        batch = patches.shape[0]
        # CLS gets pos_embed[:, :1]; the register token is inserted after the addition and
        # so gets no positional embedding.
        x = torch.cat([self.cls_token.expand(batch, -1, -1), patches], dim=1) + pos_embed
        registers = self.register_tokens.expand(batch, -1, -1)
        return torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)

    def encode(self, pixel_values: torch.Tensor) -> ImageTokens:
        """Run the encoder and return its final-normed tokens."""
        x = self.prepare_tokens(pixel_values)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        first_patch = 1 + self.cfg.num_register_tokens
        return ImageTokens(x[:, :1], x[:, 1:first_patch], x[:, first_patch:])

    def dense_features(self, pixel_values: torch.Tensor, layers: Sequence[int],
                       values: bool = True,
                       pos_embed: Optional[torch.Tensor] = None) -> DenseFeatures:
        """Run the blocks once; collect the DPT inputs and, optionally, value-trick tokens.

        Args:
            pixel_values: (B, 3, H, W) RGB in [0, 1].
            layers: 0-based blocks whose outputs the DPT decoder reads.
            values: also compute the MaskCLIP value-trick patch tokens of the last block.
            pos_embed: a precomputed positional table for this input size.

        Returns:
            The normed intermediates (in ``layers`` order) and the value tokens (or None).
        """
        grid = self.grid_size(pixel_values.shape[-2:])
        wanted = set(layers)
        if not wanted <= set(range(len(self.blocks))):
            raise ValueError(f'layers {sorted(wanted)} outside 0..{len(self.blocks) - 1}')
        if not wanted and not values:
            raise ValueError('dense_features() asked for neither layers nor values')
        # Blocks after the deepest wanted layer only matter for the value trick.
        last = len(self.blocks) - 1 if values else max(wanted)
        x = self.prepare_tokens(pixel_values, pos_embed)
        outputs, value_tokens = {}, None
        for index in range(last + 1):
            block = self.blocks[index]
            if values and index == len(self.blocks) - 1:
                x, value_trick = block.forward_with_values(x)
                value_tokens = self._patch_grid(self.norm(value_trick), grid)
            else:
                x = block(x)
            if index in wanted:
                outputs[index] = self._intermediate(self.norm(x), grid)
        return DenseFeatures(tuple(outputs[i] for i in layers), value_tokens)

    def _patch_grid(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        patches = tokens[:, 1 + self.cfg.num_register_tokens:]  # (B, h*w, D)
        return patches.reshape(patches.shape[0], grid[0], grid[1], -1)  # (B, h, w, D)

    def _intermediate(self, tokens: torch.Tensor, grid: tuple[int, int]) -> Intermediate:
        patches = self._patch_grid(tokens, grid).permute(0, 3, 1, 2)  # (B, D, h, w)
        return Intermediate(patches, tokens[:, 0])
