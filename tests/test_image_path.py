# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The fused image path equals the facade's separate calls, for every task subset and size."""
import itertools

from golden import GOLDEN
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tipsv2_ros.model import DenseOutputs, TASKS, TipsV2
from tipsv2_ros.model.image_path import PATH_OUTPUTS
from tipsv2_ros.model.layers import Block

SUBSETS = [subset for n in (1, 2, 3) for subset in itertools.combinations(TASKS, n)]


@pytest.fixture(scope='module')
def model() -> TipsV2:
    return TipsV2.from_files(GOLDEN / 'vision.npz', depth_head=GOLDEN / 'depth_dpt.zip',
                             normals_head=GOLDEN / 'normals_dpt.zip')


def reference(model: TipsV2, pixels: torch.Tensor) -> DenseOutputs:
    """Compute the same outputs with the facade's parts, called one by one."""
    dense = model.vision.dense_features(pixels, model.config.dpt.intermediate_layers)
    normals = F.normalize(model.heads['normals'](dense.intermediates), dim=1)
    return DenseOutputs(model.heads['depth'](dense.intermediates), normals,
                        F.normalize(dense.value_tokens, dim=-1))


@pytest.mark.parametrize('size', [(112, 112), (98, 126), (84, 140)])
@pytest.mark.parametrize('tasks', SUBSETS, ids='+'.join)
def test_matches_facade(model: TipsV2, tasks: tuple, size: tuple):
    pixels = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        path = model.image_path(tasks, input_size=size)
        assert path.tasks == tasks
        outputs, expected = path(pixels), reference(model, pixels)
    for task, ours, theirs in zip(TASKS, outputs, expected):
        if task not in tasks:
            assert ours is None
            continue
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    h, w = size[0] // 14, size[1] // 14
    if 'depth' in tasks:
        # 8x the patch grid for even sides; odd sides round up to the next even side.
        assert outputs.depth.shape == (2, 1, 16 * -(-h // 2), 16 * -(-w // 2))
    if 'segmentation' in tasks:
        assert outputs.features.shape == (2, h, w, 64)


def test_runs_each_block_once(model: TipsV2, monkeypatch):
    calls = []
    for name in ('forward', 'forward_with_values'):
        original = getattr(Block, name)
        monkeypatch.setattr(Block, name, lambda self, x, _f=original, _n=name: (
            calls.append(_n), _f(self, x))[1])
    path = model.image_path(TASKS, input_size=112)
    with torch.inference_mode():
        path(torch.rand(1, 3, 112, 112))
    assert calls == ['forward'] * 3 + ['forward_with_values']


def test_rejects_other_input_sizes(model: TipsV2):
    path = model.image_path(['depth'], input_size=(98, 126))
    with pytest.raises(ValueError, match=r'built for \(98, 126\) inputs'):
        path(torch.rand(1, 3, 126, 98))
    with pytest.raises(ValueError, match='multiples of 14'):
        model.image_path(['depth'], input_size=100)
    with pytest.raises(ValueError, match='non-empty subset'):
        model.image_path(['edges'])
    with pytest.raises(RuntimeError, match="'depth' needs the depth head"):
        TipsV2(model.config, model.vision).image_path(['depth'])


def test_baked_positional_table_matches_interpolation(model: TipsV2):
    """Built under inference mode, the buffer is still usable outside it."""
    with torch.inference_mode():
        path = model.image_path(['segmentation'], input_size=(98, 126))
    assert not path.encoder.pos_embed.is_inference()
    torch.testing.assert_close(path.encoder.pos_embed, model.vision.pos_embed_for((98, 126)))
    assert path.encoder.pos_embed.shape == (1, 1 + 7 * 9, 64)


def test_parts_export_separately(model: TipsV2):
    """Backends export the encoder and each head on their own (heads run lazily)."""
    path = model.image_path(TASKS, input_size=(98, 126)).eval()
    pixels = torch.rand(1, 3, 98, 126)
    encoder = torch.export.export(path.encoder, (pixels,))
    encoded = path.encoder(pixels)
    depth = torch.export.export(path.depth, (encoded.intermediates,))
    with torch.no_grad():
        torch.testing.assert_close(encoder.module()(pixels).features, encoded.features)
        torch.testing.assert_close(depth.module()(encoded.intermediates),
                                   path.depth(encoded.intermediates))


@pytest.mark.slow
def test_onnx_export_matches(model: TipsV2, tmp_path):
    """The whole path at a fixed non-square size goes through the dynamo ONNX exporter."""
    onnxruntime = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    path = model.image_path(TASKS, input_size=(98, 126)).eval()
    pixels = torch.rand(1, 3, 98, 126)
    target = tmp_path / 'image_path.onnx'
    torch.onnx.export(path, (pixels,), target, dynamo=True, input_names=['pixel_values'],
                      output_names=list(PATH_OUTPUTS), verbose=False)
    session = onnxruntime.InferenceSession(str(target), providers=['CPUExecutionProvider'])
    exported = session.run(list(PATH_OUTPUTS), {'pixel_values': pixels.numpy()})
    with torch.no_grad():
        expected = path(pixels)
    for ours, theirs in zip(exported, expected):
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4)
