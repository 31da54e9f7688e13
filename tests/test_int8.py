# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``precision: int8`` for the onnxruntime backend: quantised, cached, gated, with fallback.

Runs the real quantiser and onnxruntime on the tiny random model (112x112); the B/14
figures are in README's Performance table.
"""
import collections

import pytest

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')
onnx = pytest.importorskip('onnx')

import torch  # noqa: E402

from tipsv2_ros.model import TipsV2  # noqa: E402
from tipsv2_ros.runtime import backends, cpu, export  # noqa: E402
from tipsv2_ros.runtime.backends.onnx_backend import OnnxRuntimeBackend  # noqa: E402
from tipsv2_ros.runtime.export import int8_gate as int8_path  # noqa: E402
from tipsv2_ros.runtime.export import parity  # noqa: E402

TASKS = frozenset({'depth', 'normals', 'segmentation'})
SIZE = (112, 112)


@pytest.fixture(scope='module')
def model(tiny_weights):
    return TipsV2.from_files(tiny_weights.vision, tiny_weights.text, tiny_weights.tokenizer,
                             depth_head=tiny_weights.depth_head,
                             normals_head=tiny_weights.normals_head)


# The tiny random model's normals come out 2.4 degrees from fp32 on average (flat, random
# maps); these thresholds admit it so that the int8 path itself can be tested.
LENIENT = parity.Int8Thresholds(depth_median=0.01, normals_mean=10.0, agreement=0.9)


def _creator():
    def create(files, level='fp32', report=None):
        return OnnxRuntimeBackend(files, SIZE, TASKS, 'cpu', precision=level, report=report)
    return create


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp('int8_cache')


def _build(model, folder, lines, thresholds=LENIENT):
    parts = export.export_parts(model, TASKS, SIZE, cache_dir=folder, log=lines.append,
                                opset=23)
    return int8_path.build(model, TASKS, SIZE, 'cpu', parts, _creator(), folder,
                           lines.append, thresholds=thresholds)


@pytest.fixture(scope='module')
def built(model, folder):
    lines = []
    return _build(model, folder, lines), folder, lines


def test_int8_graphs_are_quantised_and_pass_the_gate(built):
    backend, folder, lines = built
    assert backend.precision == 'int8' and 'int8' in backend.describe()
    report = backend.report
    assert report.depth_median is not None and report.normals_mean is not None
    assert report.agreement is not None and not report.failures(LENIENT)
    assert report.depth_median < 0.01 and report.agreement >= 0.98
    assert any('passes the accuracy gate' in line for line in lines)
    assert not any(line.startswith('WARNING') for line in lines)
    ops = {}
    for path in folder.glob('*-int8-*.onnx'):
        graph = onnx.load(str(path)).graph
        ops[path.name.split('-')[2]] = collections.Counter(n.op_type for n in graph.node)
    assert set(ops) == {'encoder', 'depth', 'normals'}
    for part, counts in ops.items():
        assert counts['DynamicQuantizeLinear'] > 0, part  # the matrix products
        assert counts['MatMul'] + counts['Gemm'] < counts['MatMulInteger'], part
    # Every matrix product of the blocks, also those whose weight the exporter left behind
    # a Transpose (weights used twice), is int8; attention is the fused fp32 op. The one
    # fp32 MatMul left is the patch embedding (its weight is the conv kernel, reshaped).
    assert ops['encoder']['MatMul'] <= 1
    for head in ('depth', 'normals'):  # the convolutions, calibrated
        assert ops[head]['QuantizeLinear'] > 0 and ops[head]['Conv'] > 0


def test_weights_are_7_bit_exactly_where_int8_products_saturate(built):
    from onnx import numpy_helper

    from tipsv2_ros.runtime.export import int8 as onnx_int8
    saturates = cpu.int8_products_saturate()
    path = next(built[1].glob('*-encoder-int8-*.onnx'))
    graph = onnx.load(str(path)).graph
    weights = {i.name: i for i in graph.initializer}
    largest = max(int(abs(numpy_helper.to_array(weights[n.input[1]]).astype(int)).max())
                  for n in graph.node if n.op_type == 'MatMulInteger')
    assert largest == (64 if saturates else 127)
    assert ('7-bit' in onnx_int8.recipe()) == saturates


@pytest.mark.parametrize('machine, flags, saturates', [
    ('x86_64', 'fpu sse2 avx avx2 fma', True),  # AVX2 only: vpmaddubsw adds in int16
    ('x86_64', 'avx2 avx512f avx512_vnni', False),
    ('x86_64', 'avx2 avx_vnni', False),
    ('AMD64', 'avx2 amx_tile amx_int8', False),
    ('aarch64', 'fp asimd', False),
])
def test_which_cpus_get_7_bit_weights(machine, flags, saturates):
    assert cpu.int8_products_saturate(flags.split(), machine) is saturates


def test_the_backend_serves_int8_only_when_the_default_gate_passes(built, model):
    lines = []
    backend = backends.create('onnxruntime', model, SIZE, TASKS, 'cpu', 'int8',
                              str(built[1]), lines.append)
    failures = backend.report.failures()
    assert backend.precision == ('fp32' if failures else 'int8')
    warnings = [line for line in lines if line.startswith('WARNING')]
    assert len(warnings) == (1 if failures else 0)
    assert not any('quantis' in line for line in lines)  # the files were cached


def test_int8_outputs_follow_the_fp32_path(built, model):
    backend = built[0]
    pixels = export.sample_pixels(SIZE, 2)
    reference = backends.create('torch', model, SIZE, TASKS, 'cpu', 'fp32')
    with torch.inference_mode():
        ours, expected = backend.infer(pixels, TASKS), reference.infer(pixels, TASKS)
    assert ours.depth.shape == expected.depth.shape and ours.features.shape == \
        expected.features.shape
    relative = ((ours.depth - expected.depth).abs() / expected.depth).median()
    assert float(relative) < 0.01


def test_a_second_start_reuses_the_int8_files_and_the_verdict(built, model):
    lines = []
    again = _build(model, built[1], lines)
    assert again.precision == 'int8'
    assert not any('quantis' in line or 'gate:' in line for line in lines), lines


def test_a_graph_that_fails_the_gate_falls_back_to_fp32_with_one_warning(built, model):
    lines = []
    strict = parity.Int8Thresholds(depth_median=0.0, normals_mean=0.0, agreement=1.01)
    backend = _build(model, built[1], lines, strict)
    assert backend.precision == 'fp32' and backend.report is not None
    assert set(backend.rejected_int8) == {'encoder', 'depth', 'normals'}
    warnings = [line for line in lines if line.startswith('WARNING')]
    assert len(warnings) == 1
    assert 'depth median relative error' in warnings[0] and 'normals mean angle' in \
        warnings[0] and 'zero-shot label agreement' in warnings[0]
    assert 'falling back to fp32' in warnings[0]
    pixels = export.sample_pixels(SIZE, 1)
    with torch.inference_mode():  # the fallback serves the fp32 graphs
        assert backend.infer(pixels, TASKS).depth.shape[0] == 1


def test_a_corrupt_int8_file_is_rebuilt(built, model):
    victim = next(built[1].glob('*-normals-int8-*.onnx'))
    victim.write_bytes(victim.read_bytes()[:1000])
    lines = []
    backend = _build(model, built[1], lines)
    assert backend.precision == 'int8'
    assert any('truncated or changed' in line for line in lines)
    assert any('quantised the normals' in line for line in lines)


def test_int8_is_refused_off_the_cpu_and_on_other_backends(model):
    with pytest.raises(backends.BackendError, match='int8'):
        backends.create('onnxruntime', model, SIZE, TASKS, torch.device('cuda'), 'int8')
    with pytest.raises((backends.BackendError, ValueError)):
        backends.create('torch', model, SIZE, TASKS, 'cpu', 'int8')


def test_calibration_frames_from_a_folder(tmp_path):
    from PIL import Image
    import numpy as np
    with pytest.raises(backends.BackendError, match='no .png'):
        int8_path.gate_frames(SIZE, str(tmp_path))
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(tmp_path / 'a.png')
    frames = int8_path.gate_frames(SIZE, str(tmp_path))
    assert frames.shape == (1, 3) + SIZE
