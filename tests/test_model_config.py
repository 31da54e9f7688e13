# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Weights of any size: the model config as JSON, given or found next to the weights."""
import dataclasses
import json

from golden import GOLDEN
import numpy as np
import pytest
import torch

from tipsv2_ros.cli.main import main
from tipsv2_ros.model import CheckpointError, TINY, TipsV2, VARIANTS
from tipsv2_ros.model import config_file, random_weights
from tipsv2_ros.model.config import config_from_dict, config_to_dict
from tipsv2_ros.runtime import startup
from tipsv2_ros.runtime.config import RuntimeConfig

# Not an official size, with what shapes cannot tell: 3 heads of 16, SwiGLU, DPT layers.
ODD = config_from_dict({
    'vision': {'embed_dim': 48, 'depth': 3, 'num_heads': 3, 'pos_grid': 6, 'ffn': 'swiglu'},
    'text': {'hidden_size': 32, 'mlp_dim': 64, 'num_heads': 2, 'num_layers': 1,
             'vocab_size': 300},
    'dpt': {'intermediate_layers': [0, 1, 1, 2], 'post_process_channels': [6, 12, 24, 48],
            'channels': 16, 'segmentation_classes': 5, 'max_depth': 20.0},
}, name='odd')


@pytest.fixture(scope='module')
def odd_files(tmp_path_factory):
    return random_weights.write_random_checkpoint(tmp_path_factory.mktemp('odd'), ODD, seed=3)


def test_every_config_survives_json(tmp_path):
    for config in [*VARIANTS.values(), TINY, ODD]:
        assert config_from_dict(config_to_dict(config)) == config
        path = config_file.write_config(config, tmp_path / f'{config.name}.json')
        assert config_file.read_config(path) == config


def test_weights_of_no_official_size_load_with_the_config_next_to_them(odd_files, tmp_path):
    model = TipsV2.from_files(odd_files.vision, odd_files.text, odd_files.tokenizer,
                              depth_head=odd_files.depth_head)
    assert model.config == ODD
    path = model.image_path(('depth', 'segmentation'), (84, 56)).eval()
    with torch.no_grad():
        out = path(torch.rand(1, 3, 84, 56))
    assert out.depth.shape == (1, 1, 48, 32) and out.features.shape[-1] == 48
    assert 0 < float(out.depth.min()) and float(out.depth.max()) <= 20.0
    assert model.text_classifier(['floor', 'wall']).shape == (2, 32)
    # Without the file the shapes fit no variant: the error says how to describe them.
    alone = tmp_path / 'vision.npz'
    alone.write_bytes(odd_files.vision.read_bytes())
    with pytest.raises(CheckpointError, match=r'width 48 with 3 blocks matches no official '
                                              r'variant; give the model config.*--config'):
        TipsV2.from_files(alone)
    assert TipsV2.from_files(alone, variant=ODD).config == ODD


def test_the_config_decides_what_shapes_cannot(tmp_path):
    """Tell TINY's shapes with 2 heads from TINY (4 heads): only the config can."""
    two_heads = dataclasses.replace(TINY, name='two_heads', vision=dataclasses.replace(
        TINY.vision, num_heads=2))
    files = random_weights.write_random_checkpoint(tmp_path, two_heads, seed=1)
    described = TipsV2.from_files(files.vision)
    assert described.config.vision.num_heads == 2
    pixels = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = described.encode_image(pixels).patch_tokens
        as_tiny = TipsV2.from_files(files.vision, variant='tiny').encode_image(pixels)
    assert not torch.allclose(ours, as_tiny.patch_tokens, atol=1e-4)


def test_depth_activation_in_the_config_file(tmp_path):
    """Official (none) by default; 'relu' (transformers' default) when the config says so."""
    files = random_weights.write_random_checkpoint(tmp_path, TINY, seed=2)
    spec = json.loads((tmp_path / 'config.json').read_text())
    assert spec['dpt']['depth_activation'] == 'none'
    pixels = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0))

    def depth():
        model = TipsV2.from_files(files.vision, depth_head=files.depth_head)
        with torch.no_grad():
            return model, model.image_path(['depth'], 112)(pixels).depth
    official_model, official = depth()
    spec['dpt']['depth_activation'] = 'relu'
    (tmp_path / 'config.json').write_text(json.dumps(spec))
    relu_model, relu = depth()
    assert official_model.config.dpt.depth_activation == 'none'
    assert relu_model.config.dpt.depth_activation == 'relu'
    with torch.no_grad():
        head = relu_model.heads['depth']
        head.dpt.output_relu = False
        no_relu = relu_model.image_path(['depth'], 112)(pixels).depth
    torch.testing.assert_close(no_relu, official)
    assert not torch.allclose(relu, official, atol=1e-4)


def test_the_golden_set_describes_itself():
    model = TipsV2.from_files(GOLDEN / 'vision.npz')
    spec = json.loads((GOLDEN / 'config.json').read_text())
    assert model.config.vision.num_heads == spec['vision']['num_heads']
    assert list(model.config.dpt.intermediate_layers) == spec['dpt']['intermediate_layers']


@pytest.mark.parametrize('text, message', [
    ('{"vision": ', 'cannot read the model config'),
    ('{"architectures": ["Tipsv2Model"]}', 'not a TIPSv2 model config'),
    (json.dumps({**config_to_dict(TINY), 'text': {'hidden_size': 64}}),
     'lacks text.mlp_dim, text.num_heads, text.num_layers'),
    (json.dumps({**config_to_dict(TINY), 'vision': {
        **config_to_dict(TINY)['vision'], 'num_heads': 5}}), 'not a multiple of num_heads 5'),
    (json.dumps({**config_to_dict(TINY), 'dpt': {
        **config_to_dict(TINY)['dpt'], 'intermediate_layers': [0, 1, 2, 9]}}),
     r'must be blocks 0\.\.3'),
    (json.dumps({**config_to_dict(TINY), 'dpt': {
        **config_to_dict(TINY)['dpt'], 'depth_activation': 'gelu'}}),
     "depth_activation 'gelu' must be one of none, relu"),
])
def test_bad_config_files_are_named_with_the_reason(tmp_path, text, message):
    path = tmp_path / 'config.json'
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        config_file.read_config(path)
    assert str(path) in str(error.value)
    with pytest.raises(startup.StartupError, match=f'model.config: .*{message}'):
        startup.model_variant(RuntimeConfig(model_config=str(path)))


def test_a_foreign_config_json_next_to_the_weights_is_left_alone(tmp_path):
    folder = tmp_path / 'hf'
    folder.mkdir()
    (folder / 'vision.npz').write_bytes((GOLDEN / 'vision.npz').read_bytes())
    (folder / 'config.json').write_text('{"model_type": "tipsv2", "vision_config": {}}')
    assert TipsV2.from_files(folder / 'vision.npz').config == TINY  # known by its shapes


def test_infer_takes_the_config_flag(odd_files, tmp_path, capsys):
    config = config_file.write_config(ODD, tmp_path / 'odd.json')
    vision = tmp_path / 'weights' / 'vision.npz'
    vision.parent.mkdir()
    vision.write_bytes(odd_files.vision.read_bytes())  # no config.json beside it
    raw = tmp_path / 'raw.npz'
    argv = ['infer', str(GOLDEN / 'image_1.png'), '--input-size', '84', '--vision-weights',
            str(vision), '--depth-head', str(odd_files.depth_head), '--out',
            str(tmp_path / 'views'), '--save-raw', str(raw)]
    assert main(argv) == 1
    assert '--config' in capsys.readouterr().err
    assert main(argv + ['--config', str(config)]) == 0
    arrays = np.load(raw)
    assert arrays['patch_tokens'].shape == (1, 36, 48) and arrays['depth'].shape == (1, 1, 84, 84)
    model = TipsV2.from_files(vision, variant=ODD)
    pixels = torch.from_numpy(arrays['pixel_values'])
    with torch.no_grad():
        expected = model.encode_image(pixels).patch_tokens
    assert np.abs(arrays['patch_tokens'] - expected.numpy()).max() < 1e-5
