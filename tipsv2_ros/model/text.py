# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""TIPSv2 text encoder.

Mirrors tips/pytorch/text_encoder.py@4db271d (``PositionalEmbedding``, ``MlpBlockWithMask``,
``ResidualAttentionBlock``, ``Transformer``, ``GlobalAvgPooling``, ``TextEncoder``), batch-first
and with ``scaled_dot_product_attention`` in place of ``nn.MultiheadAttention``. Attribute
names equal the keys of the official ``tips_v2_oss_*_text.npz`` files.
"""
import math
from typing import NamedTuple

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


_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn,
                                                           '_linear_pointwise')


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  activation: str = 'none') -> torch.Tensor:
    """``F.linear`` then ``activation`` ('none' or 'relu'), the same numbers either way.

    bf16 on the CPU without autograd (label changes) runs with the weight laid out once for
    oneDNN and the bias and ReLU fused: ``F.linear`` re-lays the weight out on every call,
    about a fifth of a prompt-sized bf16 product here. Anything else is ``F.linear``.
    """
    global _ONEDNN
    if (_ONEDNN and x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16
            and x.device.type == 'cpu' and not torch.is_grad_enabled()):
        try:
            return torch.ops.mkldnn._linear_pointwise(x, _packed(weight), bias, activation,
                                                      [], '')
        except RuntimeError:  # a build whose oneDNN lacks the kernel: plain products
            _ONEDNN = False
    out = F.linear(x, weight, bias)
    return F.relu_(out) if activation == 'relu' else out


def _packed(weight: torch.Tensor) -> torch.Tensor:
    """Return the oneDNN layout of ``weight``, made again when the weight changed since."""
    stamp = (weight._version, weight.data_ptr())
    entry = getattr(weight, '_onednn_layout', None)
    if entry is None or entry[0] != stamp:
        # The batch-size hint picks oneDNN's blocking: measured with AMX at ~1000 prompt
        # tokens, the narrowing products (out <= in features) run 1.5x faster with the
        # small-batch blocking and the widening ones 1.3x faster with the large-batch one.
        hint = 1 if weight.shape[0] <= weight.shape[1] else 1024
        entry = (stamp, torch.ops.mkldnn._reorder_linear_weight(weight, hint))
        weight._onednn_layout = entry
    return entry[1]


class TokenLayout(NamedTuple):
    """Where the real tokens of a padded (N, L) batch are."""

    valid: torch.Tensor  # (N, L) bool, True = real token
    index: torch.Tensor  # (T,) flat positions of the real tokens in N * L, row-major

    @classmethod
    def of(cls, valid: torch.Tensor) -> 'TokenLayout':
        return cls(valid, valid.flatten().nonzero().squeeze(1))


class TextAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters; padded keys are masked, queries are not."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, layout: 'TokenLayout') -> torch.Tensor:
        """Self-attention over the real tokens (T, D) of texts laid out as ``layout``."""
        batch, length = layout.valid.shape
        width = x.shape[-1]
        qkv = packed_linear(x, self.in_proj_weight, self.in_proj_bias)  # (T, 3D)
        # Back to (N, L) for the attention; padded rows stay zero and are masked keys.
        padded = qkv.new_zeros(batch * length, 3 * width).index_copy_(0, layout.index, qkv)
        # (N * L, 3D) -> (3, N, heads, L, head_dim)
        q, k, v = padded.reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        key_mask = layout.valid[:, None, None, :]  # (N, 1, 1, L): masks keys only
        if x.dtype == torch.float32 or x.device.type != 'cpu':
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        else:
            out = batched_attention(q, k, v, key_mask)
        out = out.transpose(1, 2).reshape(batch * length, width).index_select(0, layout.index)
        return packed_linear(out, self.out_proj.weight, self.out_proj.bias)


def batched_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      key_mask: torch.Tensor) -> torch.Tensor:
    """Attention as two batched matrix products: (N, heads, L, d) -> (N, heads, L, d).

    For bf16 on the CPU: PyTorch's CPU flash-attention kernel takes ~5x longer than this for
    prompts of ~15 tokens (a cold label change: 90 prompts x 12 heads of 15 x 15 scores).
    """
    batch, heads, length, dim = q.shape
    bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill_(
        ~key_mask, float('-inf')).expand(batch, heads, length, length)
    scores = torch.baddbmm(bias.reshape(-1, length, length), q.reshape(-1, length, dim),
                           k.reshape(-1, length, dim).transpose(1, 2), alpha=dim ** -0.5)
    out = torch.bmm(torch.softmax(scores, dim=-1), v.reshape(-1, length, dim))
    return out.reshape(batch, heads, length, dim)


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
        hidden = packed_linear(x, self.c_fc.weight, self.c_fc.bias, 'relu')
        return packed_linear(hidden, self.c_proj.weight, self.c_proj.bias)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.attn = TextAttention(cfg.width, cfg.heads)
        self.ln_1 = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.mlp = TextMlp(cfg.width, cfg.mlp_dim)
        self.ln_2 = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """Update the real tokens (T, D) of texts laid out as ``layout``."""
        x = x + self.attn(self.ln_1(x), layout)
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
        # Every per-token product runs on the real tokens only (a label change's prompts are
        # ~3/4 real at their longest prompt's length); only the attention sees the padding.
        layout = TokenLayout.of(valid)
        x = x.reshape(-1, self.cfg.width).index_select(0, layout.index)  # (T, D)
        for block in self.transformer.resblocks:
            x = block(x, layout)
        x = self.ln_final(x).float()
        # Masked mean pooling; the official adds 1e-8 to the token count.
        sums = x.new_zeros(ids.shape[0], x.shape[-1]).index_add_(
            0, layout.index // ids.shape[1], x)
        return sums / (valid.sum(dim=1, keepdim=True).float() + 1e-8)
