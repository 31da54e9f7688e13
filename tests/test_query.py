# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Text queries without ROS: phrase validation, the cached embeddings, the heatmaps, the view.

The heatmaps are checked against a plain computation of the label image's recipe
(`zero_shot.probabilities` over the active labels plus one phrase), and on a real forward
pass of the tiny model through the pipeline's kept features.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tipsv2_ros import processing
from tipsv2_ros.heatmap_view import heatmap_view
from tipsv2_ros.model import zero_shot
from tipsv2_ros.runtime import factory
from tipsv2_ros.runtime.labels import LabelBank, LabelError, MAX_QUERY_PHRASES, validate_phrases
from tipsv2_ros.runtime.query import phrase_heatmaps

LABELS = ['floor', 'wall', 'door']


@pytest.mark.parametrize('phrases, message', [
    ([], 'empty'), (['  '], 'empty or blank'), (['x' * 201], '201 characters'),
    (['fire\textinguisher'], 'control characters'), (['\x1b[2J'], 'control characters'),
    (['a'] * (MAX_QUERY_PHRASES + 1), f'at most {MAX_QUERY_PHRASES}'), ([3], 'not a string')])
def test_phrase_validation(phrases, message):
    with pytest.raises(LabelError, match=message):
        validate_phrases(phrases)


def test_phrase_validation_cleans_and_allows_repeats():
    assert validate_phrases(['fire  extinguisher', 'café', 'café']) == (
        'fire extinguisher', 'café', 'café')


def test_embed_shares_the_label_cache_and_keeps_the_generation():
    calls = []

    def encode(names, templates):
        calls.append(list(names))
        return F.normalize(torch.randn(len(names), 8), dim=-1)

    bank = LabelBank(encode)
    active = bank.build(['floor', 'wall'], ['a {}.'])
    rows = bank.embed(['Floor', 'fire extinguisher', 'FIRE extinguisher'], ['a {}.'])
    assert calls == [['floor', 'wall'], ['fire extinguisher']]  # one encoding per new text
    torch.testing.assert_close(rows[0], active.classifier[0])
    torch.testing.assert_close(rows[1], rows[2])
    bank.embed(['fire extinguisher'], ['a {}.'])  # cached now
    assert len(calls) == 2
    assert bank.build(['floor'], ['a {}.']).generation == active.generation + 1


def _features(h=5, w=7, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(h, w, dim, generator=gen), dim=-1)


def _unit(n, dim=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=gen), dim=-1)


def test_heatmaps_are_the_phrase_probability_against_the_active_labels():
    features, active, phrases = _features(), _unit(3), _unit(2, seed=2)
    temperature, decoder = 0.05, (16, 16)
    result = phrase_heatmaps(features, active, LABELS, phrases, ['sofa', 'lamp'], temperature,
                             decoder, decoder)
    assert result.heatmaps.shape == (2, 16, 16) and result.heatmaps.dtype == np.float32
    for i in range(2):
        # Reference: the label image's recipe with the phrase as a fourth class.
        expected = zero_shot.probabilities(features[None], torch.cat([active, phrases[i:i + 1]]),
                                           temperature, decoder)[0, -1].numpy()
        np.testing.assert_allclose(result.heatmaps[i], expected, atol=1e-5)
        v, u = np.unravel_index(np.argmax(expected), expected.shape)
        assert (result.best_u[i], result.best_v[i]) == (u, v)
        assert result.best_scores[i] == pytest.approx(expected.max(), abs=1e-5)


def test_an_active_label_as_phrase_gives_its_own_probability():
    features, active = _features(seed=4), _unit(3, seed=5)
    decoder = (10, 14)
    result = phrase_heatmaps(features, active, LABELS, active[1:2], ['WALL'], 0.05, decoder,
                             decoder)
    expected = zero_shot.probabilities(features[None], active, 0.05, decoder)[0, 1].numpy()
    np.testing.assert_allclose(result.heatmaps[0], expected, atol=1e-5)
    alone = phrase_heatmaps(features, active[1:2], ['wall'], active[1:2], ['wall'], 0.05,
                            decoder, decoder)
    assert (alone.heatmaps == 1).all()  # no rival left: the phrase takes everything


def test_heatmaps_at_the_label_image_size():
    features, active, phrases = _features(), _unit(3), _unit(1, seed=7)
    result = phrase_heatmaps(features, active, LABELS, phrases, ['sofa'], 0.05, (16, 16),
                             (30, 40))
    decoder = phrase_heatmaps(features, active, LABELS, phrases, ['sofa'], 0.05, (16, 16),
                              (16, 16)).heatmaps
    expected = F.interpolate(torch.from_numpy(decoder)[None], (30, 40), mode='bilinear',
                             antialias=False, align_corners=False)[0].numpy()
    assert result.heatmaps.shape == (1, 30, 40)
    np.testing.assert_allclose(result.heatmaps, expected, atol=1e-5)
    assert 0 <= result.best_u[0] < 40 and 0 <= result.best_v[0] < 30


def test_pipeline_keeps_features_that_reproduce_its_labels(tiny_params):
    runtime = factory.build(tiny_params, log=lambda text: None)
    try:
        label_set = runtime.labels.build(LABELS, zero_shot.TEMPLATES)
        frame = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
        result = runtime.pipeline.run([frame], {'depth', 'segmentation'}, label_set)[0]
        assert result.features is not None and result.features.ndim == 3
        pipeline = runtime.pipeline
        phrases = ['floor', 'wall', 'door']
        scored = phrase_heatmaps(result.features, label_set.classifier, label_set.names,
                                 runtime.labels.embed(phrases, label_set.templates), phrases,
                                 pipeline.temperature, pipeline.model_output_size, result.size)
        # Each label's heatmap is its probability: the winner's equals the confidence image.
        winner = scored.heatmaps.argmax(0)
        assert (winner == result.labels).mean() > 0.99
        best = np.take_along_axis(scored.heatmaps, result.labels[None].astype(np.int64), 0)[0]
        np.testing.assert_allclose(best * 255, result.confidence, atol=0.51)
        depth_only = pipeline.run([frame], {'depth'}, label_set)[0]
        assert depth_only.features is None
    finally:
        runtime.close()


def test_heatmap_view_writes_the_phrase():
    image = np.full((64, 96, 3), 128, np.uint8)
    heat = np.zeros((64, 96), np.float32)
    heat[40:, 60:] = 1.0
    plain = heatmap_view(image, heat, '')
    view = heatmap_view(image, heat, 'fire extinguisher')
    assert view.shape == (64, 96, 3) and view.dtype == np.uint8
    # Hot pixels turn red (Turbo's end), cold ones stay near the frame; the text changes the
    # top-left corner only.
    assert view[50, 80, 0] > 2 * view[50, 80, 2] + 50
    assert np.abs(view[50, 20].astype(int) - 128).max() < 25
    assert np.abs(plain[30:, :].astype(int) - view[30:, :]).max() == 0
    assert np.abs(plain[:12, :60].astype(int) - view[:12, :60]).max() > 100
    with pytest.raises(ValueError, match='must be'):
        heatmap_view(image, heat[:10], 'x')


def test_projection_matrix_rule():
    k = np.array([[300.0, 0, 40], [0, 310, 30], [0, 0, 1]])
    p = np.array([[250.0, 0, 42, 0], [0, 250, 28, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(processing.projection_matrix(k, p), p[:, :3])
    np.testing.assert_array_equal(processing.projection_matrix(k, np.zeros(12)), k)
    bad = p.copy()
    bad[0, 0] = np.nan
    np.testing.assert_array_equal(processing.projection_matrix(k, bad), k)


@pytest.mark.parametrize('index', [0, 1])
def test_query_heatmap_matches_the_golden_zero_shot_probabilities(index):
    """A phrase against the other labels reproduces the official probabilities (no temperature).

    The golden set's ``zeroshot_probs`` are softmax(cosines upsampled to the image) over its
    labels; querying label i with the others active, at temperature 1 and the image size, is
    the same formula through the kept features of our own forward pass.
    """
    from golden import GOLDEN, load_model
    golden = np.load(GOLDEN / 'expected.npz')
    labels, templates = [str(v) for v in golden['labels']], [str(v) for v in golden['templates']]
    image = golden[f'image_{index}']
    model = load_model()
    size = tuple(image.shape[:2])
    with torch.inference_mode():
        path = model.image_path(['segmentation'], size)
        features = path.encoder(processing.to_pixel_values(image, size)).features[0]
        classifier = model.text_classifier(labels, templates)
    for i, phrase in enumerate(labels):
        others = [j for j in range(len(labels)) if j != i]
        result = phrase_heatmaps(features, classifier[others], [labels[j] for j in others],
                                 classifier[i:i + 1], [phrase], 1.0, size, size)
        np.testing.assert_allclose(result.heatmaps[0], golden[f'zeroshot_probs_{index}'][i],
                                   atol=1e-4)
