# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Hugging Face ``model.safetensors`` files load and match transformers' Tipsv2 models.

Small random ``Tipsv2Model`` / ``Tipsv2DptForDensePrediction`` models of transformers 5.23 are
saved with ``save_pretrained`` (which writes the layout of the google/tipsv2-* repos, undoing
transformers' renames) and loaded with our loader. Where transformers departs from the
official code, the official behaviour is asserted:

1. Depth head: transformers applies a ReLU after ``project`` (``depth_decoder_activation=
   'relu'``); the official decoders.py@4db271d (and the Scenic reference) apply none. Ours
   applies none unless the HF ``config.json`` next to the HF DPT weights asks for the ReLU
   (or the model config says ``dpt.depth_activation: relu``), and then equals transformers.
2. Text MLP: transformers does not zero padded positions after ``c_fc``/``c_proj``; the
   official code does. Padded keys are masked and pooling skips padding, so the pooled
   embeddings agree anyway (asserted below with padded inputs).
3. Saving: transformers writes the vision MLP as ``mlp.c_fc``/``mlp.c_proj`` (its text
   renames, reversed, also hit the vision keys); the official names are ``mlp.fc1``/``fc2``.
   Our loader maps both.
4. The ConvTranspose kernels are loaded as stored, like transformers (see
   ``hf_checkpoint.hf_weights`` for the flip option).
"""
import dataclasses
import json
import shutil

import pytest
import torch

from tipsv2_ros.model import checkpoint, hf_checkpoint
from tipsv2_ros.model import CheckpointError, TINY, TipsV2
from tipsv2_ros.model.config import DPTConfig, TextConfig, VisionConfig

transformers = pytest.importorskip('transformers')

VISION = {'hidden_size': 32, 'num_hidden_layers': 4, 'num_attention_heads': 4, 'mlp_ratio': 4,
          'image_size': 56, 'patch_size': 14, 'num_register_tokens': 1}
TEXT = {'hidden_size': 32, 'intermediate_size': 64, 'num_hidden_layers': 2,
        'num_attention_heads': 4, 'vocab_size': 100}
CONFIG = dataclasses.replace(
    TINY, name='hf-small', input_size=56,
    vision=VisionConfig(32, 4, 4, 128, pos_grid=4),
    text=TextConfig(32, 2, 4, 64, vocab_size=100),
    dpt=DPTConfig((0, 1, 2, 3), (4, 8, 16, 32), channels=8, depth_bins=16,
                  segmentation_classes=5))


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Perturb every parameter (incl. norms, biases, LayerScale) so nothing is trivial."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(0.1 * noise)
    return model.eval()


@pytest.fixture(scope='module')
def backbone(tmp_path_factory):
    config = transformers.Tipsv2Config(vision_config=VISION, text_config=TEXT)
    model = randomise(transformers.Tipsv2Model(config))
    directory = tmp_path_factory.mktemp('tipsv2-small')
    model.save_pretrained(directory)
    return model, directory / 'model.safetensors'


def dense_model(activation: str, directory=None):
    vision = transformers.Tipsv2VisionConfig(**VISION, out_indices=[1, 2, 3, 4],
                                             apply_layernorm=True, reshape_hidden_states=False)
    config = transformers.Tipsv2DptConfig(
        backbone_config=vision, neck_hidden_sizes=[4, 8, 16, 32], fusion_hidden_size=8,
        num_depth_bins=16, num_labels=5, depth_decoder_activation=activation)
    if directory is not None:
        return transformers.Tipsv2DptForDensePrediction.from_pretrained(directory, config=config)
    return randomise(transformers.Tipsv2DptForDensePrediction(config))


@pytest.fixture(scope='module')
def dense(tmp_path_factory):
    model = dense_model('relu')
    directory = tmp_path_factory.mktemp('tipsv2-small-dpt')
    model.save_pretrained(directory)
    return model, directory


def test_saved_layout_is_the_hub_layout(backbone, dense):
    keys = set(checkpoint.read_arrays(backbone[1]))
    assert 'temperature' in keys and 'vision_encoder.pos_embed' in keys
    assert 'vision_encoder.blocks.0.mlp.c_fc.weight' in keys  # difference 3
    assert 'text_encoder.transformer.resblocks.1.attn.in_proj_weight' in keys
    keys = set(checkpoint.read_arrays(dense[1] / 'model.safetensors'))
    assert {'depth_head.reassemble.resize_layers.0.weight', 'depth_head.depth_head.weight',
            'normals_head.project.bias', 'segmentation_head.convs.3.weight'} <= keys


@pytest.mark.parametrize('size', [(56, 56), (42, 70)])
def test_image_tokens_match(backbone, size):
    reference, path = backbone
    ours = TipsV2.from_files(path, variant=CONFIG)
    pixels = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = reference.get_image_features(pixel_values=pixels).last_hidden_state
        tokens = ours.encode_image(pixels)
    torch.testing.assert_close(tokens.cls_first, hidden[:, :1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tokens.cls_second, hidden[:, 1:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tokens.patch_tokens, hidden[:, 2:], rtol=1e-5, atol=1e-5)


def test_text_embeddings_and_temperature_match(backbone):
    reference, path = backbone
    ours = TipsV2.from_files(path, variant=CONFIG)  # the text tower comes from the same file
    assert ours.temperature == pytest.approx(reference.temperature.detach().item())
    ids = torch.randint(1, 100, (3, 64), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([5, 17, 64])
    paddings = (torch.arange(64)[None] >= lengths[:, None]).long()
    ids = ids * (1 - paddings)
    with torch.no_grad():
        theirs = reference.get_text_features(input_ids=ids, attention_mask=1 - paddings)
        torch.testing.assert_close(ours.text(ids, paddings), theirs.pooler_output,
                                   rtol=1e-5, atol=1e-5)  # difference 2 has no effect


def assert_close_at_scale(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Within 1e-5 of the output's largest magnitude, as the golden parity tests measure.

    Our decoder orders some float sums differently (the readout split, 1x1 convolutions
    before the upsampling; see dpt.py), and these random heads output values near 1e3, so
    single elements that cancel to near zero differ by ~1e-3 absolute: rounding, not layout.
    """
    torch.testing.assert_close(ours, theirs, rtol=1e-5,
                               atol=1e-5 * max(1.0, theirs.abs().max().item()))


def ours_dense(weights, config=CONFIG):
    """Our three heads on the HF file, and the pixels they were run on."""
    ours = TipsV2.from_files(weights, depth_head=weights, normals_head=weights,
                             segmentation_head=weights, variant=config)
    pixels = torch.rand(1, 3, 70, 42, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        intermediates = ours.vision.dense_features(pixels, config.dpt.intermediate_layers
                                                   ).intermediates
        return ours, pixels, {task: head(intermediates) for task, head in ours.heads.items()}


def test_dense_heads_match(dense):
    reference, directory = dense
    ours, pixels, heads = ours_dense(directory / 'model.safetensors')
    with torch.no_grad():
        theirs = reference(pixel_values=pixels)
    assert_close_at_scale(heads['normals'], theirs.normals)
    assert_close_at_scale(heads['ade20k'], theirs.segmentation_logits)
    # Difference 1: the config.json saved next to the weights asks for transformers' ReLU.
    assert ours.config.dpt.depth_activation == 'relu'
    assert_close_at_scale(heads['depth'][:, 0], theirs.predicted_depth)


def test_depth_activation_official_without_hf_config(dense, tmp_path):
    """Without the HF config (or with 'linear') the depth head is the official one."""
    reference, directory = dense
    bare = tmp_path / 'bare' / 'model.safetensors'
    bare.parent.mkdir()
    shutil.copy(directory / 'model.safetensors', bare)
    ours, pixels, heads = ours_dense(bare)
    assert ours.config.dpt.depth_activation == 'none'
    with torch.no_grad():
        theirs_relu = reference(pixel_values=pixels).predicted_depth
        theirs_official = dense_model('linear', directory)(pixel_values=pixels).predicted_depth
    assert_close_at_scale(heads['depth'][:, 0], theirs_official)
    assert not torch.allclose(heads['depth'][:, 0], theirs_relu, atol=1e-3)
    # The model config can ask for the ReLU too (golden layout: dpt.depth_activation).
    relu = dataclasses.replace(CONFIG, dpt=dataclasses.replace(CONFIG.dpt,
                                                               depth_activation='relu'))
    assert_close_at_scale(ours_dense(bare, relu)[2]['depth'][:, 0], theirs_relu)
    linear = tmp_path / 'linear'
    dense_model('linear', directory).save_pretrained(linear)
    assert TipsV2.from_files(linear / 'model.safetensors', depth_head=linear / 'model.safetensors',
                             variant=CONFIG).config.dpt.depth_activation == 'none'


def test_unsupported_hf_depth_activation_is_refused(dense, tmp_path):
    reference, directory = dense
    spec = json.loads((directory / 'config.json').read_text())
    (tmp_path / 'config.json').write_text(json.dumps({**spec, 'depth_decoder_activation':
                                                      'gelu'}))
    shutil.copy(directory / 'model.safetensors', tmp_path / 'model.safetensors')
    weights = tmp_path / 'model.safetensors'
    with pytest.raises(CheckpointError, match="depth_decoder_activation 'gelu' is not"):
        TipsV2.from_files(weights, depth_head=weights, variant=CONFIG)


def test_flip_option_changes_only_conv_transpose(dense):
    arrays = checkpoint.read_arrays(dense[1] / 'model.safetensors')
    plain = hf_checkpoint.hf_weights(arrays).heads['depth']
    flipped = hf_checkpoint.hf_weights(arrays, flip_conv_transpose=True).heads['depth']
    changed = sorted(k for k in plain if not torch.equal(plain[k], flipped[k]))
    assert changed == list(hf_checkpoint.CONV_TRANSPOSE_KEYS)
    assert torch.equal(flipped[changed[0]], plain[changed[0]].flip(2, 3))
