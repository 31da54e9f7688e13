# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""TIPSv2 text encoder.

Mirrors tips/pytorch/text_encoder.py@4db271d (``PositionalEmbedding``, ``MlpBlockWithMask``,
``ResidualAttentionBlock``, ``Transformer``, ``GlobalAvgPooling``, ``TextEncoder``), batch-first
and with ``scaled_dot_product_attention`` in place of ``nn.MultiheadAttention``. Attribute
names equal the keys of the official ``tips_v2_oss_*_text.npz`` files.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

from tipsv2_ros.model.config import TextConfig


def sinusoid_position_embedding(length: int, dim: int) -> torch.Tensor:
    """Return fixed sinusoids, a sin then a cos block (not interleaved): (length, dim) float32."""
    half = dim // 2
    increment = math.log(10000.0) / max(half - 1, 1)
    inv_timescales = torch.exp(torch.arange(half, dtype=torch.float32) * -increment)
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (length, 2 * half)
    return F.pad(table, (0, dim % 2))


class TextAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters; padded keys are masked, queries are not."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Self-attention over (N, L, D) with ``key_mask`` (N, 1, 1, L), True = real token."""
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (N, L, 3D)
        # (N, L, 3D) -> (3, N, heads, L, head_dim)
        q, k, v = qkv.reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class TextMlp(nn.Module):
    """``c_fc`` -> ReLU -> ``c_proj``.

    The official block also zeroes padded positions after each Linear. A padded position
    never reaches a real one (it is a masked attention key and is left out of the pooling,
    and the MLP works per position), so those two multiplications change no output; they
    are left out (two passes over the (N, L, 4D) activations per block).
    """

    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, mlp_dim)
        self.c_proj = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.attn = TextAttention(cfg.width, cfg.heads)
        self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.mlp = TextMlp(cfg.width, cfg.mlp_dim)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), key_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """The stack of blocks, under the official ``transformer.resblocks`` key prefix."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(cfg) for _ in range(cfg.layers))


class TextEncoder(nn.Module):
    """Token ids -> one (unnormalised) embedding per text in the image space.

    Runs in the dtype of its weights: float32 (the reference), or bfloat16 after
    ``.to(torch.bfloat16)`` on CPUs with native bf16 matrix units (label changes several
    times faster); the pooled embedding is always float32.
    """

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Zeros instead of nn.Embedding's normal init: the weights always come from a file, and
        # a normal_() on the meta device costs a second of lazy imports.
        self.token_embedding = nn.Embedding.from_pretrained(
            torch.zeros(cfg.vocab_size, cfg.width), freeze=False)
        self.transformer = Transformer(cfg)
        self.ln_final = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)

    def forward(self, ids: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        """Encode tokenised texts.

        Any length L works: the official pads to 64, but padded positions change no output,
        so a batch padded only to its longest text gives the same embeddings.

        Args:
            ids: (N, L) token ids.
            paddings: (N, L), 1 where the position is padding (``ids == 0``).

        Returns:
            (N, D) float32: masked mean of the final-normed tokens.
        """
        valid = paddings == 0  # (N, L)
        if not bool(valid.any(dim=1).all()):
            # Attention over only padded keys is undefined (the official code yields NaN).
            raise ValueError('a text has no tokens; empty strings cannot be encoded')
        x = self.token_embedding(ids) * math.sqrt(self.cfg.width)
        x = x + sinusoid_position_embedding(ids.shape[1], self.cfg.width).to(x)
        key_mask = valid[:, None, None, :]  # (N, 1, 1, L): masks keys only
        for block in self.transformer.resblocks:
            x = block(x, key_mask)
        x = self.ln_final(x).float()
        keep = valid[..., None].float()  # (N, L, 1)
        # Masked mean pooling; the official adds 1e-8 to the token count.
        return (x * keep).sum(dim=1) / (keep.sum(dim=1) + 1e-8)
