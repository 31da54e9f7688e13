# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The ADE20K segmentation head as a task: class names, golden labels, backend limits."""
from golden import file_flags, FILES, GOLDEN
import numpy as np
from PIL import Image
import pytest
import torch
import torch.nn.functional as F

from tipsv2_ros.cli.main import main
from tipsv2_ros.model import ade20k
from tipsv2_ros.ros.params import runtime_config
from tipsv2_ros.runtime import startup

EXPECTED = np.load(GOLDEN / 'expected.npz')


def test_the_150_class_names_of_the_decoder_notebook():
    names = ade20k.ade20k_classes()
    assert len(names) == len(set(names)) == 150
    assert names[:4] == ('wall', 'building', 'sky', 'floor') and names[-1] == 'flag'
    assert names[89] == 'television' and 'chest of drawers' in names
    assert ade20k.class_names(150) == names
    assert ade20k.class_names(7) == tuple(f'class {i}' for i in range(7))


@pytest.mark.parametrize('index', [0, 1])
def test_labels_are_the_argmax_of_the_upsampled_golden_logits(index):
    image = np.array(Image.open(GOLDEN / f'image_{index}.png').convert('RGB'))
    values = {**FILES, 'model.segmentation_head': str(GOLDEN / 'segmentation_dpt.zip'),
              'model.input_size': 'x'.join(map(str, image.shape[:2])),
              'backend': 'auto' if index else 'torch', 'tasks': ['ade20k']}
    runtime = startup.build(runtime_config(values), log=lambda text: None)
    assert runtime.backend.name == 'torch'  # auto: the ADE20K head runs in PyTorch
    result = runtime.pipeline.run([image], {'ade20k'}, None, output='input')[0]
    assert result.depth is None and result.labels is None
    logits = torch.from_numpy(EXPECTED[f'segmentation_logits_{index}'])  # at (H, W) already
    probs = F.softmax(logits, dim=1)[0].numpy()
    top2 = np.sort(probs, axis=0)[-2:]
    decided = top2[1] - top2[0] > 1e-4
    assert decided.mean() > 0.9
    np.testing.assert_array_equal(result.ade20k_labels[decided], probs.argmax(0)[decided])
    np.testing.assert_allclose(result.ade20k_confidence, np.round(probs.max(0) * 255), atol=1)


def test_ade20k_runs_on_the_torch_backend_only():
    values = {**FILES, 'model.segmentation_head': str(GOLDEN / 'segmentation_dpt.zip'),
              'model.input_size': 112, 'backend': 'onnxruntime', 'tasks': ['ade20k']}
    with pytest.raises(startup.StartupError, match="task 'ade20k' runs on the torch backend"):
        startup.build(runtime_config(values), log=lambda text: None)
    values = {**values, 'backend': 'torch', 'model.segmentation_head': ''}
    with pytest.raises(startup.StartupError, match="'ade20k' needs model.segmentation_head"):
        startup.build(runtime_config(values), log=lambda text: None)


def test_infer_draws_the_ade20k_view(tmp_path):
    argv = ['infer', str(GOLDEN / 'image_0.png'), '--input-size', '112',
            *file_flags('vision_weights', 'depth_head', 'segmentation_head'),
            '--out', str(tmp_path)]
    assert main(argv) == 0
    view = Image.open(tmp_path / 'image_0_ade20k.png')
    assert view.width > 112 and view.height >= 112  # the overlay plus its legend
