# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Every key spelling the official DPT loader reads loads the golden heads to the same outputs.

The golden heads (released Scenic layout) are rewritten into each spelling that
tips/pytorch/decoders.py@4db271d accepts: with or without ``decoder/``, with or without the
``dpt/`` level, ``out_conv`` for ``Conv_0``, the other head names, extra keys, PyTorch and
legacy flat names. Each must load and give bit-identical outputs; missing or mis-shaped
tensors are still refused by name.
"""
import logging

from golden import GOLDEN
import numpy as np
import pytest
import torch

from tipsv2_ros.model import checkpoint, dpt_checkpoint
from tipsv2_ros.model import CheckpointError, TipsV2
from tipsv2_ros.model.vision import Intermediate
from tipsv2_ros.tasks import REGISTRY

EXPECTED = np.load(GOLDEN / 'expected.npz')
RELEASED_HEAD = {'depth': 'pixel_depth_classif', 'normals': 'pixel_normals',
                 'segmentation': 'pixel_segmentation'}
OTHER_HEAD = {'depth': 'pixel_depth_regress', 'segmentation': 'segmentation_head'}


def released(task: str) -> dict[str, np.ndarray]:
    return checkpoint.read_arrays(GOLDEN / f'{task}_dpt.zip')


def rename(arrays: dict, edit) -> dict:
    return {edit(key): value for key, value in arrays.items()}


def without_dpt_level(key: str) -> str:
    return key.replace('decoder/dpt/', 'decoder/')


def flat(task: str, legacy: bool) -> dict[str, np.ndarray]:
    """Return the head in PyTorch names (or legacy flat ones) as the official loader reads them.

    That loader rotates the two ConvTranspose kernels of flat files too, so they are stored
    rotated here.
    """
    _, state, _ = dpt_checkpoint.scenic_to_torch(released(task))
    arrays = {}
    for name, tensor in state.items():
        if name in dpt_checkpoint.CONV_TRANSPOSE_KEYS:
            tensor = tensor.flip(2, 3)
        if legacy:
            name = name.removeprefix('dpt.')
            name = RELEASED_HEAD[task] + name[4:] if name.startswith('head.') else name
        arrays[name] = tensor.numpy()
    return arrays


SPELLINGS = {
    'released': lambda task: released(task),
    'no decoder/ prefix': lambda task: rename(released(task),
                                              lambda k: k.removeprefix('decoder/')),
    'no dpt/ level': lambda task: rename(released(task), without_dpt_level),
    'neither prefix nor level': lambda task: rename(
        released(task), lambda k: without_dpt_level(k).removeprefix('decoder/')),
    'out_conv for Conv_0': lambda task: rename(released(task),
                                               lambda k: k.replace('/Conv_0/', '/out_conv/')),
    'pytorch names': lambda task: flat(task, legacy=False),
    'legacy flat names': lambda task: flat(task, legacy=True),
}


def write(tmp_path, arrays: dict, name: str = 'head_dpt.npz'):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def head_outputs(task: str, path) -> torch.Tensor:
    model = TipsV2.from_files(GOLDEN / 'vision.npz', **{f'{task}_head': path})
    intermediates = [Intermediate(torch.from_numpy(EXPECTED[f'dpt_input_{j}_patches_1']),
                                  torch.from_numpy(EXPECTED[f'dpt_input_{j}_cls_1']))
                     for j in range(4)]
    with torch.inference_mode():  # heads are keyed by task: 'segmentation' is ade20k
        return model.heads[REGISTRY.by_checkpoint_name(task).name](intermediates)


@pytest.fixture(scope='module')
def reference() -> dict[str, torch.Tensor]:
    return {task: head_outputs(task, GOLDEN / f'{task}_dpt.zip') for task in RELEASED_HEAD}


@pytest.mark.parametrize('task', sorted(RELEASED_HEAD))
@pytest.mark.parametrize('spelling', sorted(SPELLINGS))
def test_every_official_spelling_loads_identically(reference, tmp_path, task, spelling):
    arrays = SPELLINGS[spelling](task)
    assert set(arrays) != set(released(task)) or spelling == 'released'
    assert torch.equal(head_outputs(task, write(tmp_path, arrays)), reference[task])


@pytest.mark.parametrize('task', sorted(OTHER_HEAD))
def test_other_head_names_load_identically(reference, tmp_path, task):
    old, new = RELEASED_HEAD[task], OTHER_HEAD[task]
    arrays = rename(released(task), lambda k: k.replace(f'/{old}/', f'/{new}/'))
    assert any(f'/{new}/' in key for key in arrays)
    assert torch.equal(head_outputs(task, write(tmp_path, arrays)), reference[task])


def test_unknown_keys_are_listed_in_one_warning(reference, tmp_path, caplog):
    arrays = {**released('depth'), 'decoder/dpt/extra/kernel': np.zeros(2, np.float32),
              'decoder/optimizer_state/step': np.zeros(1, np.float32)}
    path = write(tmp_path, arrays)
    with caplog.at_level(logging.WARNING, logger='tipsv2_ros.model.dpt_checkpoint'):
        outputs = head_outputs('depth', path)
    assert torch.equal(outputs, reference['depth'])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'ignored 2 key(s)' in warnings[0] and str(path) in warnings[0]
    assert 'dpt/extra/kernel' in warnings[0] and 'optimizer_state/step' in warnings[0]


def test_flat_file_with_unknown_keys_loads_with_one_warning(reference, tmp_path, caplog):
    arrays = {**flat('normals', legacy=False), 'num_batches_tracked': np.zeros(1, np.int64)}
    with caplog.at_level(logging.WARNING, logger='tipsv2_ros.model.dpt_checkpoint'):
        outputs = head_outputs('normals', write(tmp_path, arrays))
    assert torch.equal(outputs, reference['normals'])
    assert [r.getMessage().count('num_batches_tracked') for r in caplog.records] == [1]


def test_missing_tensor_in_another_spelling_is_refused_by_name(tmp_path):
    arrays = rename(released('depth'),
                    lambda k: without_dpt_level(k).replace('/Conv_0/', '/out_conv/'))
    del arrays['decoder/fusion_blocks_1/out_conv/bias']
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): fusion_blocks_1/Conv_0/bias'):
        TipsV2.from_files(GOLDEN / 'vision.npz', depth_head=write(tmp_path, arrays))
    arrays = flat('normals', legacy=True)
    del arrays['project.bias']
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): dpt\.project\.bias'):
        TipsV2.from_files(GOLDEN / 'vision.npz', normals_head=write(tmp_path, arrays))


def test_misshaped_tensor_in_another_spelling_is_refused_by_name(tmp_path):
    arrays = rename(released('segmentation'), lambda k: k.replace('/pixel_segmentation/',
                                                                  '/segmentation_head/'))
    arrays['decoder/segmentation_head/bias'] = np.zeros(5, np.float32)
    with pytest.raises(CheckpointError, match=r'shape mismatches \(1\): head\.bias \(5,\)'):
        TipsV2.from_files(GOLDEN / 'vision.npz', segmentation_head=write(tmp_path, arrays))


def test_head_of_another_task_is_refused_in_every_spelling(tmp_path):
    arrays = rename(released('depth'), lambda k: k.replace('/pixel_depth_classif/',
                                                           '/pixel_depth_regress/'))
    with pytest.raises(CheckpointError, match='holds the depth head, not the normals head'):
        TipsV2.from_files(GOLDEN / 'vision.npz', normals_head=write(tmp_path, arrays))
    with pytest.raises(CheckpointError, match='holds the depth head, not the segmentation'):
        TipsV2.from_files(GOLDEN / 'vision.npz',
                          segmentation_head=write(tmp_path, flat('depth', legacy=True)))
