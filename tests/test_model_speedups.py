# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Each faster formulation in the model equals the plain one it replaces (see docs/benchmark.md).

The golden parity tests cover the whole model; these pin each rewrite on its own, with
random inputs, so that a regression names its cause.
"""
import pytest
import torch
import torch.nn.functional as F

from tipsv2_ros.model import layers
from tipsv2_ros.model.dpt import FeatureFusionBlock, pointwise, ReassembleBlocks
from tipsv2_ros.model.tips import _trim_padding
from tipsv2_ros.model.vision import Intermediate


def randomised(module: torch.nn.Module) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return module.eval()


def test_fused_linear_gelu_equals_linear_then_gelu():
    linear = randomised(torch.nn.Linear(32, 128))
    x = torch.randn(2, 50, 32)
    with torch.inference_mode():
        fused = layers.linear_gelu(x, linear)
    with torch.no_grad():  # the plain path: only inference takes the oneDNN call
        plain = F.gelu(linear(x))
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_patch_embedding_as_a_matrix_product_equals_the_convolution():
    embed = randomised(layers.PatchEmbed(24, 14))
    pixels = torch.rand(2, 3, 42, 70)
    expected = embed.proj(pixels).flatten(2).transpose(1, 2)
    torch.testing.assert_close(embed(pixels), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('channels_last', [False, True])
def test_pointwise_equals_the_1x1_convolution(channels_last):
    conv = randomised(torch.nn.Conv2d(16, 8, 1))
    x = torch.randn(2, 16, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(pointwise(conv, x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('size', [(4, 4), (5, 3)])
def test_fusion_block_projects_before_upsampling_as_after(size):
    block = randomised(FeatureFusionBlock(8, has_residual=True))
    x, skip = torch.randn(1, 8, *size), torch.randn(1, 8, *size)
    with torch.no_grad():
        ours = block(x, skip)
        y = block.main_unit(x + block.residual_unit(skip))  # the official order:
        y = F.interpolate(y, scale_factor=2, mode='bilinear', align_corners=True)
        torch.testing.assert_close(ours, block.out_conv(y), rtol=1e-5, atol=1e-5)


def test_split_readout_equals_the_concatenated_one():
    reassemble = randomised(ReassembleBlocks(16, (4, 8, 16, 32)))
    patches, cls = torch.randn(2, 16, 3, 5), torch.randn(2, 16)
    with torch.no_grad():
        ours = reassemble([Intermediate(patches, cls)] * 4)[2]  # the identity-resize level
        tokens = patches.flatten(2).transpose(1, 2)
        readout = cls[:, None].expand(-1, tokens.shape[1], -1)
        tokens = F.gelu(reassemble.readout_projects[2](torch.cat([tokens, readout], -1)),
                        approximate='tanh')
        x = tokens.transpose(1, 2).reshape(2, 16, 3, 5)
        torch.testing.assert_close(ours, reassemble.out_projections[2](x), rtol=1e-5,
                                   atol=1e-5)


def test_trim_padding_drops_only_columns_padded_in_every_text():
    ids = torch.tensor([[5, 6, 0, 0, 0], [7, 8, 9, 0, 0]])
    trimmed_ids, trimmed = _trim_padding(ids, (ids == 0).long())
    assert trimmed_ids.tolist() == [[5, 6, 0], [7, 8, 9]]
    assert trimmed.tolist() == [[0, 0, 1], [0, 0, 0]]
    empty = torch.zeros(1, 4, dtype=torch.long)
    assert _trim_padding(empty, torch.ones_like(empty))[0].shape == (1, 4)
