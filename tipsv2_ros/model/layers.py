# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""ViT building blocks with the official parameter names.

Mirrors tips/pytorch/image_encoder.py@4db271d (``PatchEmbed``, ``Attention``, ``Mlp``,
``SwiGLUFFN``, ``LayerScale``, ``Block``), without xFormers, drop-path or nested tensors,
and with the MaskCLIP "value trick" of tips/pytorch/TIPS_zeroshot_segmentation.ipynb@4db271d
(``encode_image_value_attention``) as a method of the block.
"""
import functools

import torch
from torch import nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution: (B, 3, H, W) -> (B, h*w, D)."""

    def __init__(self, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        height, width = pixel_values.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f'input {height}x{width} is not a multiple of the patch size '
                             f'{self.patch_size}; resize it first')
        # A stride = kernel convolution is one matrix product of the flattened patches with
        # the flattened kernel; as a GEMM it runs several times faster than the CPU convolution.
        batch, channels = pixel_values.shape[:2]
        size, h, w = self.patch_size, height // self.patch_size, width // self.patch_size
        patches = pixel_values.reshape(batch, channels, h, size, w, size)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, h * w, -1)  # (B, h*w, C*p*p)
        # (B, h*w, D), row-major over the grid
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


class Attention(nn.Module):
    """Multi-head self-attention with a packed ``qkv`` projection ([q; k; v], heads contiguous)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention output (before ``proj``) from the packed projection (B, N, 3D)."""
        batch, tokens, packed = qkv.shape
        head_dim = packed // (3 * self.num_heads)
        # (B, N, 3D) -> (3, B, heads, N, head_dim), views: the attention kernels take strided
        # heads, and then write their output token-major, so the reshape below is a view too.
        q, k, v = qkv.reshape(batch, tokens, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return x.transpose(1, 2).reshape(batch, tokens, packed // 3)  # (B, N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.qkv(x)))


@functools.lru_cache(maxsize=None)
def _has_onednn_linear() -> bool:
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, '_linear_pointwise'))


def linear_gelu(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Return ``gelu(linear(x))`` (exact GELU), in one oneDNN call where that is possible.

    The fused call writes the (N, 4D) hidden activations once; the unfused path writes the
    bias, runs the GEMM over it and reads it again for the GELU. On a small, shared CPU each
    extra pass also waits for every thread, which cost the MLP ~15% under load (measured in
    ``tipsv2 bench``). Used for CPU fp32 inference only: autograd, autocast, exports and
    other devices take the plain path, which gives the same values (parity-tested).
    """
    if (x.device.type == 'cpu' and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling()
            and _has_onednn_linear()):
        return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, 'gelu', [],
                                                  'none')
    return F.gelu(linear(x))


class Mlp(nn.Module):
    """Two-layer MLP with the exact (erf) GELU of ``nn.GELU()``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear_gelu(x, self.fc1))


class SwiGLUFFN(nn.Module):
    """SwiGLU feed-forward (g/14): ``w3(silu(x1) * x2)`` with ``x1, x2 = w12(x).chunk(2)``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden_dim)
        self.w3 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    """Per-channel residual scale ``gamma``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Return ``residual + self(x)`` in one pass over memory."""
        return torch.addcmul(residual, x, self.gamma)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``+ ls2(mlp(norm2(.)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden_dim: int, ffn: str = 'mlp',
                 ln_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        if ffn == 'mlp':
            self.mlp = Mlp(dim, mlp_hidden_dim)
        elif ffn == 'swiglu':
            self.mlp = SwiGLUFFN(dim, mlp_hidden_dim)
        else:
            raise ValueError(f"unknown feed-forward {ffn!r}; expected 'mlp' or 'swiglu'")
        self.ls2 = LayerScale(dim)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls2.add_to(x, self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ls1.add_to(x, self.attn(self.norm1(x)))
        return self._feed_forward(x)

    def forward_with_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the block normally and with the MaskCLIP value trick, sharing ``norm1`` and ``qkv``.

        The value trick replaces the attention output by the value path alone (no token
        mixing), which keeps each patch token local; the rest of the block is unchanged.

        Returns:
            The normal block output and the value-trick output, both (B, N, D).
        """
        qkv = self.attn.qkv(self.norm1(x))  # (B, N, 3D)
        # [q; k; v] with heads contiguous, so the last third is v with the heads merged.
        values = qkv[..., 2 * x.shape[-1]:]  # (B, N, D)
        normal = self.ls1.add_to(x, self.attn.proj(self.attn.attend(qkv)))
        value_trick = self.ls1.add_to(x, self.attn.proj(values))
        return self._feed_forward(normal), self._feed_forward(value_trick)
