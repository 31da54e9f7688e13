# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The frame pipeline, the label bank and the runtime factory, without ROS."""
import numpy as np
import pytest
import torch

from tipsv2_ros.model import zero_shot
from tipsv2_ros.ros.params import runtime_config
from tipsv2_ros.runtime import startup
from tipsv2_ros.runtime.config import parse_input_size
from tipsv2_ros.runtime.frame import processing
from tipsv2_ros.runtime.frame.labels import LabelBank, LabelError, validate_labels
from tipsv2_ros.runtime.frame.pipeline import NORMALS_TO_OPTICAL

LABELS = ['floor', 'wall', 'door']


@pytest.fixture(scope='module')
def runtime(tiny_params):
    return startup.build(runtime_config(tiny_params), log=lambda text: None)


def _frame(height=50, width=70, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_outputs_follow_the_image_path(runtime):
    labels = runtime.labels.build(LABELS, zero_shot.TEMPLATES)
    frame = _frame()
    result = runtime.pipeline.run([frame], {'depth', 'normals', 'segmentation'}, labels)[0]
    assert result.size == (64, 64)
    pixels = torch.nn.functional.interpolate(
        torch.from_numpy(frame).permute(2, 0, 1)[None].float(), (112, 112), mode='bilinear',
        antialias=True, align_corners=False) / 255
    with torch.inference_mode():
        dense = runtime.model.image_path(('depth', 'normals', 'segmentation'), 112)(pixels)
        seg = zero_shot.segment(dense.features, labels.classifier, runtime.model.temperature,
                                (64, 64))
    np.testing.assert_allclose(result.depth, dense.depth[0, 0].numpy(), rtol=1e-4)
    # Published normals are in the optical frame: the head's vectors negated.
    np.testing.assert_allclose(result.normals, NORMALS_TO_OPTICAL
                               * dense.normals[0].permute(1, 2, 0).numpy(), atol=1e-4)
    np.testing.assert_array_equal(result.labels, seg.labels[0].numpy())
    np.testing.assert_allclose(result.confidence, np.round(seg.confidence[0].numpy() * 255),
                               atol=1)
    assert result.label_set is labels


def test_input_resolution_and_task_subsets(runtime):
    labels = runtime.labels.build(LABELS, zero_shot.TEMPLATES)
    frames = [_frame(), _frame(31, 47, seed=1)]
    results = runtime.pipeline.run(frames, {'segmentation'}, labels, output='input')
    assert [r.size for r in results] == [(50, 70), (31, 47)]
    for result in results:
        assert result.depth is None and result.normals is None
        assert result.labels.shape == result.size and result.labels.dtype == np.uint8
    only_depth = runtime.pipeline.run(frames[:1], {'depth'}, labels)[0]
    assert only_depth.labels is None and only_depth.depth.shape == (64, 64)
    # Without a label set there is nothing to segment against.
    assert runtime.pipeline.run(frames[:1], {'segmentation'}, None)[0].labels is None


def test_threshold_marks_unsure_pixels(runtime):
    labels = runtime.labels.build(LABELS, zero_shot.TEMPLATES)
    result = runtime.pipeline.run([_frame()], {'segmentation'}, labels, threshold=1.0)[0]
    assert (result.labels == 255).all()


@pytest.fixture(scope='module')
def sliding_runtime(tiny_params):
    values = {**tiny_params, 'segmentation.mode': 'slide', 'segmentation.window': 56,
              'segmentation.stride': 28}
    return startup.build(runtime_config(values), log=lambda text: None)


def test_slide_mode_runs_heads_once_and_slides_the_features(sliding_runtime):
    """Heads run once on the whole frame; only the zero-shot features come from windows."""
    runtime = sliding_runtime
    slide = runtime.pipeline.slide
    assert slide.backend.input_size == (56, 56) and slide.backend.tasks == {'segmentation'}
    calls = []
    for name, backend in (('whole', runtime.backend), ('windows', slide.backend)):
        infer = backend.infer
        backend.infer = (lambda pixels, tasks, infer=infer, name=name:
                         calls.append((name, tuple(pixels.shape), sorted(tasks)))
                         or infer(pixels, tasks))
    try:
        labels = runtime.labels.build(LABELS, zero_shot.TEMPLATES)
        frame = _frame(60, 90)  # short side to 56: 56x84, windows at x = 0 and 28
        result = runtime.pipeline.run([frame], {'depth', 'normals', 'segmentation'}, labels,
                                      output='input')[0]
    finally:
        del runtime.backend.infer, slide.backend.infer
    assert calls == [('whole', (1, 3, 112, 112), ['depth', 'normals']),
                     ('windows', (2, 3, 56, 56), ['segmentation'])]
    assert result.labels.shape == (60, 90) and result.depth.shape == (60, 90)
    # The labels are the argmax of the merged window probabilities, resized bilinearly.
    pixels = processing.to_pixel_values(frame, (56, 84), mode='bicubic')
    windows = zero_shot.slide_windows((56, 84), 56, 28)
    assert windows == [(0, 56, 0, 56), (0, 56, 28, 84)]
    with torch.inference_mode():
        features = torch.nn.functional.normalize(runtime.model.vision.dense_features(
            zero_shot.crop_windows(pixels, windows), ()).value_tokens, dim=-1)
        probs = zero_shot.slide_probabilities(features, labels.classifier, windows, (56, 84),
                                              runtime.model.temperature)
        probs = processing.resize_dense(probs[None], (60, 90), 'bilinear')[0]
    confidence, expected = probs.max(dim=0)
    np.testing.assert_array_equal(result.labels, expected.numpy())
    np.testing.assert_allclose(result.confidence, np.round(confidence.numpy() * 255), atol=1)


def test_slide_mode_keeps_whole_frame_features_for_queries_on_demand(sliding_runtime):
    """Text queries score whole-frame features: computed in slide mode only when asked."""
    labels = sliding_runtime.labels.build(LABELS, zero_shot.TEMPLATES)
    pipeline = sliding_runtime.pipeline
    plain = pipeline.run([_frame(60, 90)], {'segmentation'}, labels)[0]
    assert plain.features is None and plain.labels is not None
    kept = pipeline.run([_frame(60, 90)], {'segmentation'}, labels, keep_features=True)[0]
    assert kept.features.shape == (8, 8, 64)  # the 112x112 whole-frame grid
    np.testing.assert_array_equal(kept.labels, plain.labels)  # labels still from windows


def test_slide_mode_settings_are_checked(tiny_params):
    for settings, message in (({'segmentation.window': 56, 'segmentation.stride': 57},
                               'stride <= window'),
                              ({'segmentation.window': 7}, '14 <= window'),
                              ({'segmentation.mode': 'tiles'}, "unknown mode 'tiles'")):
        values = {**tiny_params, 'segmentation.mode': 'slide', **settings}
        with pytest.raises(startup.StartupError, match=message):
            startup.build(runtime_config(values), log=lambda text: None)


def test_input_resolution_labels_come_from_upsampled_cosines(runtime):
    """output_resolution input: cosines upsampled to the camera size, argmax there."""
    labels = runtime.labels.build(LABELS, zero_shot.TEMPLATES)
    frame = _frame(90, 130)
    result = runtime.pipeline.run([frame], {'segmentation'}, labels, output='input')[0]
    pixels = processing.to_pixel_values(frame, (112, 112))
    with torch.inference_mode():
        features = runtime.model.image_path(['segmentation'], 112)(pixels).features
        seg = zero_shot.segment(features, labels.classifier, runtime.model.temperature,
                                (90, 130))
    np.testing.assert_array_equal(result.labels, seg.labels[0].numpy())


def test_label_map_in_blocks_equals_one_pass(monkeypatch):
    """Labels over class blocks (bounded memory) equal the softmax-argmax of all at once."""
    scores = 3 * torch.randn(2, 37, 5, 7, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(torch.nn.functional.interpolate(
        scores, (30, 41), mode='bilinear', align_corners=False), dim=1)
    confidence, labels = probs.max(dim=1)
    monkeypatch.setattr(zero_shot, '_BLOCK_ELEMENTS', 2 * 30 * 41 * 4)  # 4 classes a block
    seg = zero_shot.label_map(scores, (30, 41), threshold=0.2)
    torch.testing.assert_close(seg.confidence, confidence, rtol=1e-5, atol=1e-6)
    sure = confidence >= 0.2
    assert bool((seg.labels[sure] == labels[sure].to(torch.uint8)).all())
    assert bool((seg.labels[~sure] == zero_shot.UNLABELLED).all()) and bool((~sure).any())


def test_label_bank_caches_embeddings_per_label():
    calls = []

    def encode(names, templates):
        calls.append(list(names))
        return torch.nn.functional.normalize(torch.randn(len(names), 8), dim=-1)

    bank = LabelBank(encode)
    first = bank.build(['floor', 'wall'], ['a {}.'])
    second = bank.build(['wall', 'door'], ['a {}.'])
    assert calls == [['floor', 'wall'], ['door']]
    torch.testing.assert_close(first.classifier[1], second.classifier[0])
    assert second.generation == first.generation + 1
    bank.build(['Floor', 'DOOR'], ['a {}.'])  # the tokenizer lower-cases: cached
    assert len(calls) == 2
    bank.build(['floor'], ['a photo of a {}.'])  # new templates: new embeddings
    assert len(calls) == 3


@pytest.mark.parametrize('labels, message', [
    ([], 'empty'), ([' '], 'empty'), (['a', 'A'], 'duplicate'), (['x' * 201], 'characters'),
    (['a\nb'], 'control'), ([str(i) for i in range(256)], '255'), ([3], 'not a string')])
def test_label_validation(labels, message):
    with pytest.raises(LabelError, match=message):
        validate_labels(labels)


def test_label_validation_keeps_unicode_and_collapses_spaces():
    assert validate_labels(['glass  door', 'café', '椅子']) == ('glass door', 'café', '椅子')


def test_labels_fold_case_as_the_tokenizer_does(tiny_weights, monkeypatch):
    """Only ASCII letters fold: 'Äpfel' and 'äpfel' tokenise differently and stay distinct."""
    from tipsv2_ros.model.tokenizer import normalise, Tokenizer
    tokenizer = Tokenizer(tiny_weights.tokenizer)
    seen = []
    pieces = tokenizer._processor.encode
    monkeypatch.setattr(tokenizer._processor, 'encode',
                        lambda texts, **kw: seen.extend(texts) or pieces(texts, **kw))
    tokenizer.tokenize(['ÄPFEL', 'Äpfel', 'äpfel', 'İstanbul'])
    assert seen == ['Äpfel', 'Äpfel', 'äpfel', 'İstanbul']  # what SentencePiece gets
    assert [normalise(t) for t in ('ÄPFEL', 'Äpfel', 'äpfel', 'İstanbul')] == seen
    assert validate_labels(['Äpfel', 'äpfel']) == ('Äpfel', 'äpfel')
    with pytest.raises(LabelError, match="duplicate label 'ÄPFEL'"):
        validate_labels(['Äpfel', 'ÄPFEL'])
    calls = []

    def encode(names, templates):
        calls.append(list(names))
        return torch.nn.functional.normalize(torch.randn(len(names), 8), dim=-1)

    bank = LabelBank(encode)
    bank.build(['Äpfel'], ['a {}.'])
    bank.build(['äpfel', 'ÄPFEL'], ['a {}.'])  # a new text, then a cached one
    assert calls == [['Äpfel'], ['äpfel']]
    assert bank.cached(['ÄPFEL', 'äpfel'], ['a {}.'])


@pytest.mark.parametrize('value, size', [(448, (448, 448)), ('336x448', (336, 448)),
                                         ('224', (224, 224)), ([98, 126], (98, 126))])
def test_parse_input_size(value, size):
    assert parse_input_size(value) == size


@pytest.mark.parametrize('value', [450, '448x', 'abc', 0, [14, 14, 14], True])
def test_parse_input_size_rejects(value):
    with pytest.raises(ValueError):
        parse_input_size(value)


def test_factory_errors_name_the_problem(tiny_params, tmp_path):
    missing = {**tiny_params, 'model.depth_head': str(tmp_path / 'nope.zip')}
    with pytest.raises(startup.StartupError, match='no such file'):
        startup.build(runtime_config(missing), log=lambda text: None)
    no_head = {**tiny_params, 'model.normals_head': ''}
    with pytest.raises(startup.StartupError, match='normals'):
        startup.build(runtime_config(no_head), log=lambda text: None)
    corrupt = tmp_path / 'vision.npz'
    corrupt.write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(startup.StartupError, match='could not load'):
        startup.build(runtime_config({**tiny_params, 'model.vision_weights': str(corrupt)}),
                      log=lambda text: None)


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present')
def test_cuda_device_without_a_gpu_is_a_startup_error():
    with pytest.raises(startup.StartupError, match='CUDA'):
        startup.resolve_device('cuda:0')
