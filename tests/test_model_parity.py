# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Parity with the official TIPSv2 PyTorch code on the golden data (tests/data/golden).

Every array of ``expected.npz`` (made by google-deepmind/tips@4db271d from the random weights
next to it, in the released file formats) must be reproduced within
``max|ours - golden| <= 1e-4 * max(1, max|golden|)``; token ids and paddings exactly.
"""
import json

import golden
from golden import GOLDEN
import numpy as np
from PIL import Image
import pytest
import torch
import torch.nn.functional as F

from tipsv2_ros.model import TINY, TipsV2
from tipsv2_ros.model.config import config_from_dict
from tipsv2_ros.model.reference import raw_slide_outputs
from tipsv2_ros.model.zero_shot import (classifier_from_embeddings, cosine_maps, probabilities,
                                        prompts, segment, UNLABELLED)
from tipsv2_ros.runtime.frame.processing import to_pixel_values

EXPECTED = np.load(GOLDEN / 'expected.npz')
# Compared exactly or by their own rules below.
SPECIAL = {'labels', 'templates', 'text_ids', 'text_paddings', 'zeroshot_argmax_0',
           'zeroshot_argmax_1', 'image_0', 'image_1', 'raw_image', 'raw_pixel_values'}
NUMERIC = sorted(set(EXPECTED.files) - SPECIAL)


def relative_error(ours: np.ndarray, golden: np.ndarray) -> float:
    """Return ``max|ours - golden| / max(1, max|golden|)``; the tolerance is 1e-4."""
    assert ours.shape == golden.shape
    return float(np.abs(ours - golden).max() / max(1.0, float(np.abs(golden).max())))


@pytest.fixture(scope='module')
def model() -> TipsV2:
    return golden.load_model(segmentation_head=True)


@pytest.fixture(scope='module')
def ours(model: TipsV2) -> dict[str, np.ndarray]:
    """Every golden output, computed through the public API."""
    labels, templates = list(EXPECTED['labels']), list(EXPECTED['templates'])
    out = {'temperature': np.float32(model.temperature)}
    with torch.inference_mode():
        embeddings = model.encode_text(prompts(labels, templates))
        classifier = classifier_from_embeddings(embeddings, len(templates))
        assert torch.allclose(classifier, model.text_classifier(labels, templates))
        out.update(text_embeddings=embeddings, text_classifier=classifier)
        for i in (0, 1):
            image = np.array(Image.open(GOLDEN / f'image_{i}.png').convert('RGB'))
            pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            size = pixels.shape[-2:]
            tokens = model.encode_image(pixels)
            dense = model.vision.dense_features(pixels, model.config.dpt.intermediate_layers)
            for j, (patches, cls) in enumerate(dense.intermediates):
                out[f'dpt_input_{j}_patches_{i}'], out[f'dpt_input_{j}_cls_{i}'] = patches, cls
            depth = model.heads['depth'](dense.intermediates)
            normals = model.heads['normals'](dense.intermediates)
            logits = model.heads['ade20k'](dense.intermediates)
            features = F.normalize(dense.value_tokens, dim=-1)
            out.update({
                f'image_{i}': image, f'pixel_values_{i}': pixels,
                f'cls_first_{i}': tokens.cls_first, f'cls_second_{i}': tokens.cls_second,
                f'patch_tokens_{i}': tokens.patch_tokens,
                f'depth_lowres_{i}': depth,
                f'depth_{i}': F.interpolate(depth, size=size, mode='bilinear'),
                f'normals_raw_{i}': normals, f'normals_unit_{i}': F.normalize(normals, dim=1),
                f'segmentation_logits_{i}': F.interpolate(logits, size=size, mode='bilinear'),
                f'value_patch_tokens_{i}': dense.value_tokens,
                f'zeroshot_cos_{i}': cosine_maps(features, classifier)[0],
                # temperature 1 is the official evaluation's plain softmax of cosines
                f'zeroshot_probs_{i}': probabilities(features, classifier, 1.0, size)[0],
            })
        side, stride = (int(n) for n in EXPECTED['zeroshot_slide_side_stride'])
        slide = raw_slide_outputs(model, out['pixel_values_1'], classifier, side, stride)
        out['zeroshot_slide_probs_1'] = slide['zeroshot_slide_probs']
        out['zeroshot_slide_side_stride'] = slide['zeroshot_slide_side_stride']
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


@pytest.mark.parametrize('name', NUMERIC)
def test_matches_official(ours: dict, name: str):
    assert relative_error(ours[name], EXPECTED[name]) <= 1e-4, name


@pytest.mark.parametrize('i', [0, 1])
def test_images_and_argmax(ours: dict, i: int):
    np.testing.assert_array_equal(ours[f'image_{i}'], EXPECTED[f'image_{i}'])
    probs = EXPECTED[f'zeroshot_probs_{i}']
    top2 = np.sort(probs, axis=0)[-2:]
    decided = top2[1] - top2[0] > 1e-5  # near-ties may legitimately flip
    ours_argmax = ours[f'zeroshot_probs_{i}'].argmax(axis=0)
    np.testing.assert_array_equal(ours_argmax[decided], EXPECTED[f'zeroshot_argmax_{i}'][decided])


def test_camera_frame_preprocessing_within_a_grey_level():
    """Our resize of a camera frame vs torchvision's PIL resize: within 1/255 (informational)."""
    ours = to_pixel_values(EXPECTED['raw_image'], EXPECTED['raw_pixel_values'].shape[-2:])
    assert np.abs(ours.numpy() - EXPECTED['raw_pixel_values']).max() <= 1 / 255


def test_tokenizer_exact(model: TipsV2):
    texts = prompts(list(EXPECTED['labels']), list(EXPECTED['templates']))
    ids, paddings = model.tokenizer.tokenize(texts)
    np.testing.assert_array_equal(ids.numpy(), EXPECTED['text_ids'])
    np.testing.assert_array_equal(paddings.numpy(), EXPECTED['text_paddings'])


def test_tokenizer_lowercases_ascii_and_truncates(model: TipsV2):
    tokenizer = model.tokenizer
    assert torch.equal(tokenizer.tokenize(['A PHOTO OF A CAT.']).ids,
                       tokenizer.tokenize(['a photo of a cat.']).ids)
    ids, paddings = tokenizer.tokenize(['cat ' * 100, 'cat'])
    assert ids.shape == (2, 64) and bool((ids[0] != 0).all())
    assert int(paddings[0].sum()) == 0  # truncated: no padding
    assert int(paddings[1].sum()) == 64 - int((ids[1] != 0).sum())


def test_golden_config_is_tiny():
    spec = json.loads((GOLDEN / 'config.json').read_text())
    assert config_from_dict(spec, name='tiny') == TINY


def test_segment_uses_temperature_and_threshold(model: TipsV2):
    """Softmax(cos / temperature) is peaked where the plain softmax is nearly uniform."""
    with torch.inference_mode():
        pixels = torch.from_numpy(EXPECTED['pixel_values_0'])
        path = model.image_path(['segmentation'], input_size=pixels.shape[-2:])
        features = path(pixels).features
        classifier = torch.from_numpy(EXPECTED['text_classifier'])
        result = segment(features, classifier, model.temperature, (56, 56), threshold=0.9)
    plain = EXPECTED['zeroshot_probs_0'].max(axis=0)
    assert plain.max() < 0.4  # 3 labels: the official softmax stays close to 1/3
    assert result.labels.dtype == torch.uint8 and result.labels.shape == (1, 56, 56)
    assert float(result.confidence.max()) > 0.9
    below = result.confidence < 0.9
    assert bool((result.labels[below] == UNLABELLED).all())
    assert bool((result.labels[~below] < 3).all())
