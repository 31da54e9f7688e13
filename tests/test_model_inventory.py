# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Our module trees match the released checkpoints' keys and shapes, for every variant.

``inventory.json`` lists the state-dict keys and shapes of the official classes at full size
(B/14, L/14, So400m/14, g/14), so this checks, without downloading anything, that a strict
load of the real files succeeds. The modules are built on the meta device: no memory.
"""
import json
import pathlib

import pytest
import torch

from tipsv2_ros.model import checkpoint, dpt_checkpoint, VARIANTS
from tipsv2_ros.model.dpt import DepthHead
from tipsv2_ros.model.text import TextEncoder
from tipsv2_ros.model.vision import VisionTransformer
from tipsv2_ros.tasks import REGISTRY

INVENTORY = json.loads(
    (pathlib.Path(__file__).parent / 'data' / 'golden' / 'inventory.json').read_text())


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in module.state_dict().items()}


def meta(build, *args) -> torch.nn.Module:
    with torch.device('meta'):
        return build(*args)


def assert_same_tree(ours: dict, official: dict) -> None:
    assert sorted(set(official) - set(ours)) == [], 'missing in ours'
    assert sorted(set(ours) - set(official)) == [], 'not in the checkpoint'
    wrong = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert wrong == {}


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_vision_tree(name: str):
    assert_same_tree(shapes(meta(VisionTransformer, VARIANTS[name].vision)),
                     INVENTORY[f'{name}_vision'])


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_text_tree(name: str):
    official = dict(INVENTORY[f'{name}_text'])
    assert official.pop('temperature') == []  # a scalar, split off by the loader
    assert_same_tree(shapes(meta(TextEncoder, VARIANTS[name].text)), official)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_dpt_tree(name: str):
    cfg = VARIANTS[name]
    official = INVENTORY[f'{name}_depth_dpt_torch']
    assert_same_tree(shapes(meta(DepthHead, cfg.vision.embed_dim, cfg.dpt)), official)
    # The other heads differ only in the final Linear (and have no depth bins).
    for task, classes in (('normals', 3), ('ade20k', 150)):
        tree = shapes(meta(REGISTRY[task].head_class(), cfg.vision.embed_dim, cfg.dpt))
        expected = {k: v for k, v in official.items() if k != 'bin_centers'}
        expected.update({'head.weight': [classes, 256], 'head.bias': [classes]})
        assert_same_tree(tree, expected)


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_scenic_table_covers_the_decoder(name: str):
    """Every PyTorch key of a head has exactly one Scenic source (bin_centers is computed)."""
    official = set(INVENTORY[f'{name}_depth_dpt_torch']) - {'bin_centers'}
    assert set(dpt_checkpoint.scenic_dpt_table('depth')) == official


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_variant_inferred_from_shapes(name: str):
    """The loaders name the variant a file's shapes point to."""
    fake = {k: torch.empty(v, device='meta') for k, v in INVENTORY[f'{name}_vision'].items()}
    assert checkpoint.infer_variant(fake, 'vision') == name
    fake = {k: torch.empty(v, device='meta') for k, v in INVENTORY[f'{name}_text'].items()}
    assert checkpoint.infer_variant(fake, 'text') == name
    fake = {k: torch.empty(v, device='meta')
            for k, v in INVENTORY[f'{name}_depth_dpt_torch'].items()}
    assert checkpoint.infer_variant(fake, 'dpt') == name


def test_published_hyper_parameters():
    """Facts from the official code and HF configs that shapes alone cannot show."""
    layers = {name: cfg.dpt.intermediate_layers for name, cfg in VARIANTS.items()}
    assert layers == {'b14': (2, 5, 8, 11), 'l14': (5, 11, 17, 23),
                      'so400m14': (6, 13, 20, 26), 'g14': (9, 19, 29, 39)}
    heads = {name: (cfg.vision.num_heads, cfg.text.heads) for name, cfg in VARIANTS.items()}
    assert heads == {'b14': (12, 12), 'l14': (16, 16), 'so400m14': (16, 16), 'g14': (24, 24)}
    temperatures = {name: cfg.temperature for name, cfg in VARIANTS.items()}
    assert temperatures == {'b14': 0.005065968260169029, 'l14': 0.004785141441971064,
                            'so400m14': 0.004638021811842918, 'g14': 0.003622700460255146}
    assert VARIANTS['g14'].vision.ffn == 'swiglu'
    assert all(cfg.input_size == 448 and cfg.vision.pos_grid == 32 for cfg in VARIANTS.values())
