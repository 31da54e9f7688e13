# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Loading is strict, and every way a weight file can be wrong gives an error naming it."""
import dataclasses
import pathlib
import time
import zipfile

import numpy as np
import pytest
import torch

from tipsv2_ros.model import CheckpointError, dpt_checkpoint, TINY, TipsV2
from tipsv2_ros.model.dpt import DepthHead
from tipsv2_ros.model.random_weights import write_random_checkpoint


@pytest.fixture(scope='module')
def files(tmp_path_factory) -> dict[str, pathlib.Path]:
    started = time.perf_counter()
    paths = write_random_checkpoint(tmp_path_factory.mktemp('tiny'), 'tiny', seed=0)
    assert time.perf_counter() - started < 2.0  # the demo and node tests rely on this
    named = paths._asdict()
    return {key.removesuffix('_head'): value for key, value in named.items()}


def rewrite_npz(source: pathlib.Path, target: pathlib.Path, edit) -> pathlib.Path:
    arrays = dict(np.load(source))
    edit(arrays)
    np.savez(target, **arrays)
    return target


def test_random_checkpoint_loads_and_is_deterministic(files, tmp_path):
    model = TipsV2.from_files(files['vision'], files['text'], files['tokenizer'],
                              depth_head=files['depth'], normals_head=files['normals'],
                              segmentation_head=files['segmentation'])
    assert model.config == TINY and model.temperature == pytest.approx(TINY.temperature)
    assert model.describe() == 'TIPSv2 tiny (vision, text, heads: depth, normals, ade20k)'
    again = write_random_checkpoint(tmp_path, 'tiny', seed=0)
    pairs = (('vision', again.vision), ('text', again.text), ('depth', again.depth_head))
    for part, path in pairs:
        first, second = np.load(files[part]), np.load(path)
        assert all(np.array_equal(first[k], second[k]) for k in first.files)


def test_missing_key(files, tmp_path):
    broken = rewrite_npz(files['vision'], tmp_path / 'v.npz', lambda a: a.pop('norm.bias'))
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): norm\.bias'):
        TipsV2.from_files(broken)


def test_unexpected_key(files, tmp_path):
    def add(arrays):
        arrays['blocks.0.attn.extra'] = np.zeros(3, np.float32)
    broken = rewrite_npz(files['vision'], tmp_path / 'v.npz', add)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(1\): blocks\.0\.attn\.extra'):
        TipsV2.from_files(broken)


def test_wrong_shape(files, tmp_path):
    def shrink(arrays):
        arrays['pos_embed'] = arrays['pos_embed'][:, :50]
    broken = rewrite_npz(files['vision'], tmp_path / 'v.npz', shrink)
    with pytest.raises(CheckpointError, match=r'shape mismatches \(1\): pos_embed \(1, 50, 64\) '
                                              r'!= model \(1, 65, 64\)'):
        TipsV2.from_files(broken)


def test_wrong_variant(files):
    with pytest.raises(CheckpointError, match="variant 'b14' was requested but .* 'tiny'"):
        TipsV2.from_files(files['vision'], variant='b14')


def test_unknown_shapes_need_a_config(files, tmp_path):
    def drop_block(arrays):
        for key in [k for k in arrays if k.startswith('blocks.3.')]:
            arrays.pop(key)
    broken = rewrite_npz(files['vision'], tmp_path / 'v.npz', drop_block)
    with pytest.raises(CheckpointError,
                       match='width 64 with 3 blocks matches no official variant'):
        TipsV2.from_files(broken)
    with pytest.raises(CheckpointError, match=r'missing keys \(14\): blocks\.3\.'):
        TipsV2.from_files(broken, variant=TINY)


def test_text_of_another_variant(files, tmp_path):
    def drop_layer(arrays):
        for key in [k for k in arrays if '.resblocks.1.' in k]:
            arrays.pop(key)
    broken = rewrite_npz(files['text'], tmp_path / 't.npz', drop_layer)
    with pytest.raises(CheckpointError, match=r'\(text\) does not fit the model \(tiny\); '
                                              r'missing keys \(12\).*match no known variant'):
        TipsV2.from_files(files['vision'], broken)


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'single_array'])
@pytest.mark.parametrize('part', ['vision', 'depth'])
def test_unreadable_file(files, tmp_path, part, damage):
    target = tmp_path / files[part].name
    data = files[part].read_bytes()
    if damage == 'truncate':
        target.write_bytes(data[:len(data) // 2])
    elif damage == 'garbage':
        target.write_bytes(bytes(range(256)) * 64)
    else:
        np.save(target.with_suffix('.npy'), np.zeros(3))
        target.with_suffix('.npy').rename(target)
    kwargs = {'depth_head': target} if part == 'depth' else {}
    vision = target if part == 'vision' else files['vision']
    with pytest.raises(CheckpointError, match=f'{target}: cannot read it as a weight archive'):
        TipsV2.from_files(vision, **kwargs)


def test_corrupt_tokenizer(files, tmp_path):
    broken = tmp_path / 'tokenizer.model'
    broken.write_bytes(files['tokenizer'].read_bytes()[:100])
    with pytest.raises(CheckpointError, match='not a SentencePiece model'):
        TipsV2.from_files(files['vision'], tokenizer=broken)


def test_truncated_safetensors(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / 'model.safetensors'
    save_file({'vision_encoder.norm.weight': torch.ones(64)}, path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        TipsV2.from_files(path)


def test_scenic_head_missing_kernel(files, tmp_path):
    target = tmp_path / 'depth_dpt.zip'
    with zipfile.ZipFile(files['depth']) as source, zipfile.ZipFile(target, 'w') as out:
        for item in source.infolist():
            if 'fusion_blocks_2/PreActResidualConvUnit_1/conv1' not in item.filename:
                out.writestr(item, source.read(item))
    with pytest.raises(CheckpointError, match='Scenic depth DPT file does not fit the model; '
                                              r'missing keys \(1\): dpt/fusion_blocks_2/'
                                              r'PreActResidualConvUnit_1/conv1/kernel'):
        TipsV2.from_files(files['vision'], depth_head=target)


def test_head_file_of_another_task(files):
    with pytest.raises(CheckpointError, match='holds the normals head, not the depth head'):
        TipsV2.from_files(files['vision'], depth_head=files['normals'])


def test_tokenizer_too_big_for_the_embedding(files, tmp_path):
    from tipsv2_ros.model.random_weights import train_tokenizer
    big = tmp_path / 'tokenizer.model'
    big.write_bytes(train_tokenizer())
    small = dataclasses.replace(TINY, text=dataclasses.replace(TINY.text, vocab_size=10))
    with pytest.raises(CheckpointError, match='pieces do not fit'):
        TipsV2.from_files(files['vision'], tokenizer=big, variant=small)


def test_scenic_round_trip_and_conv_transpose_flip():
    """Round-trip torch -> Scenic -> torch exactly; only ConvTranspose kernels are rotated."""
    head = DepthHead(64, TINY.dpt)
    state = {k: v for k, v in head.state_dict().items() if k != 'bin_centers'}
    scenic = dpt_checkpoint.torch_to_scenic(state, 'depth')
    task, back, unused = dpt_checkpoint.scenic_to_torch(scenic)
    assert task == 'depth' and set(back) == set(state) and unused == []
    assert all(torch.equal(back[k], state[k]) for k in state)
    kernel = scenic['decoder/dpt/reassemble_blocks/resize_layers_0/kernel']  # (H, W, in, out)
    torch_kernel = state['dpt.reassemble.resize_layers.0.weight'].numpy()  # (in, out, H, W)
    np.testing.assert_array_equal(kernel[::-1, ::-1], torch_kernel.transpose(2, 3, 0, 1))
    # Without the optional 'decoder/' prefix, as the official loader also accepts.
    plain = {k.removeprefix('decoder/'): v for k, v in scenic.items()}
    assert dpt_checkpoint.scenic_to_torch(plain)[0] == 'depth'
