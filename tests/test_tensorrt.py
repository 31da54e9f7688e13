# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The TensorRT path on a real GPU: engine build, parity gate, cache, fallback, timing.

Each test is skipped (not failed) without TensorRT or a CUDA GPU. On a GPU machine set up
with ``TIPSV2_TORCH=cu128 scripts/setup.sh --test --tensorrt`` (or ``tools/gpu_check.sh``,
which runs this file), run everything (figures with -s; the B/14 test is marked slow: add
``-m 'not slow'`` to leave it out)::

    python -m pytest tests/test_tensorrt.py -v -s
"""
import importlib.util
import json
import time

import golden
from golden import FILES, ROLES
import pytest
import torch

from tipsv2_ros.model import TASKS, TipsV2
from tipsv2_ros.ros.params import runtime_config
from tipsv2_ros.runtime import backends, export
from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
from tipsv2_ros.runtime.export import parity

WHY_NOT = ('no CUDA GPU visible to torch' if not torch.cuda.is_available() else
           'TensorRT is not installed' if importlib.util.find_spec('tensorrt') is None else
           'onnxruntime is not installed' if importlib.util.find_spec('onnxruntime') is None
           else '')
pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt,
              pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT)]
tensorrt = None if WHY_NOT else importlib.import_module('tensorrt')
CUDA = torch.device('cuda')


@pytest.fixture(scope='module')
def model() -> TipsV2:
    return golden.load_model().to(CUDA)


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp('engines')


def _create(model, cache_dir, logs, precision='fp16', tasks=TASKS, size=(112, 112)):
    return backends.create('tensorrt', model, size, tasks, CUDA, precision, cache_dir,
                           logs.append, runtime_config(FILES))


def test_engine_builds_passes_the_gate_and_matches_torch(model, cache_dir):
    logs = []
    start = time.perf_counter()
    backend = _create(model, cache_dir, logs)
    print(f'\nbuilt in {time.perf_counter() - start:.1f} s:', *logs, sep='\n  ')
    assert backend.name == 'tensorrt' and backend.report.passed()
    assert backend.precision.split(' ')[0] in ('fp16', 'fp16-safe', 'fp32', 'encoder')
    assert f'TensorRT {tensorrt.__version__}' in backend.describe()
    assert any('TensorRT: ' in line for line in logs)  # build progress was visible
    for path in backend.files.values():
        record = json.loads(export.cache.sidecar(path).read_text())
        assert record['key']['tensorrt'] == tensorrt.__version__
        assert torch.cuda.get_device_name() in record['key']['gpu']
    pixels = export.sample_pixels((112, 112), 6, CUDA)  # 6 > max batch 4: two chunks
    with torch.inference_mode():
        ours = backend.infer(pixels, frozenset(TASKS))
        with parity.strict_fp32():
            theirs = TorchBackend(model, (112, 112), TASKS).infer(pixels, frozenset(TASKS))
    for a, b in zip(ours, theirs):
        assert a.device.type == 'cuda' and a.dtype == torch.float32 and a.shape == b.shape
    classifier = model.text_classifier(['floor', 'wall', 'door', 'picture', 'box', 'ball'])
    report = parity.compare(ours, theirs, classifier)
    print(f'{backend.describe()}: {report.describe()}')
    assert report.passed()
    only_depth = backend.infer(pixels[:1], frozenset({'depth'}))
    assert only_depth.normals is None and only_depth.features is None


def test_cached_engines_are_reused_and_a_corrupt_one_is_rebuilt(model, cache_dir):
    _create(model, cache_dir, [])  # built (or reused) by the test above
    logs = []
    start = time.perf_counter()
    backend = _create(model, cache_dir, logs)
    print(f'\nloaded from the cache in {time.perf_counter() - start:.1f} s')
    assert not any(line.startswith('building') for line in logs)
    engine = backend.files['normals']
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    logs.clear()
    _create(model, cache_dir, logs)
    assert any('is corrupt (SHA-256 mismatch); rebuilding' in line for line in logs)
    assert [line.split(' of the ')[1].split(' (')[0] for line in logs
            if line.startswith('building')] == ['normals']


def test_fp32_engine_and_forced_fallback(model, cache_dir):
    from tipsv2_ros.runtime.backends.tensorrt.backend import TensorRTBackend
    logs = []
    assert _create(model, cache_dir, logs, 'fp32', ('depth',)).precision == 'fp32'

    def gate(backend):  # pretend the fp16 engines are broken
        if backend.precision == 'fp16':
            return parity.ParityReport(segmentation=0.3)
        from tipsv2_ros.runtime.backends.tensorrt.backend import measure
        return measure(backend, model)
    backend = TensorRTBackend.build(model, (112, 112), ['segmentation'], CUDA, 'fp16',
                                    cache_dir, backends.checkpoint_ids(TASKS, ROLES),
                                    logs.append, gate=gate)
    assert backend.precision == 'fp16-safe'
    assert any(line.startswith('WARNING: the TensorRT fp16 engines fail') for line in logs)


def test_misaligned_size_runs_on_its_own_stream_with_shared_activations(model, cache_dir):
    """Run 98x126 (63 patches), whose batch chunks start at misaligned addresses.

    They are re-aligned; the engines share one activation block and run on their own stream.
    """
    logs = []
    backend = backends.create('tensorrt', model, (98, 126), TASKS, CUDA, 'fp16', cache_dir,
                              logs.append,
                              runtime_config({**FILES, 'tensorrt.max_batch': 2}))
    assert backend.report.passed(), backend.report.describe()
    engines = [r for r in backend.runners.values() if hasattr(r, 'activation_bytes')]
    assert engines and backend.activations.bytes == max(e.activation_bytes for e in engines)
    assert backend.stream.cuda_stream != torch.cuda.default_stream(CUDA).cuda_stream
    assert any(p.name.endswith('.cache') for p in cache_dir.iterdir())  # the timing cache
    pixels = export.sample_pixels((98, 126), 3, CUDA)
    assert (pixels[1].data_ptr() - pixels.data_ptr()) % 256  # chunk 2 is misaligned
    caller = torch.cuda.Stream(CUDA)  # a caller on its own stream: ordering by events only
    with torch.inference_mode(), torch.cuda.stream(caller):
        ours = backend.infer(pixels * 1.0, frozenset(TASKS))
        reference = TorchBackend(model, (98, 126), TASKS)
        with parity.strict_fp32():
            theirs = reference.infer(pixels, frozenset(TASKS))
    caller.synchronize()
    with parity.strict_fp32():
        classifier = model.text_classifier(['floor', 'wall', 'door', 'picture'])
    assert parity.compare(ours, theirs, classifier).passed()


def test_engine_inspector_reports_precisions(model, cache_dir):
    from tipsv2_ros.runtime.backends.tensorrt import inspection as tensorrt_inspect
    backend = _create(model, cache_dir, [])
    summary = tensorrt_inspect.summarise(tensorrt_inspect.engine_layers(
        backend.files['encoder'].read_bytes()))
    print(f'\nencoder engine ({backend.precision}): {summary}')
    known = sum(n for p, n in summary['precisions'].items() if p != '?')
    assert summary['layers'] > 0 and known > summary['layers'] // 2  # detailed verbosity
    if backend.precision.startswith('fp16'):
        assert summary['precisions'].get('FP16', 0) > 0


def test_runtime_releases_the_image_tower_after_the_gate(cache_dir):
    from tipsv2_ros.runtime import startup
    values = {**FILES, 'backend': 'tensorrt', 'device': 'cuda', 'model.input_size': 112,
              'engine_cache_dir': str(cache_dir), 'tasks': list(TASKS)}
    logs = []
    runtime = startup.build(runtime_config(values), log=logs.append)
    try:
        assert runtime.model.vision.pos_embed.device.type == 'cpu'
        assert next(runtime.model.text.parameters()).device.type == 'cuda'
        assert any('left the GPU' in line for line in logs)
        labels = runtime.labels.build(['floor', 'wall'], ('a photo of a {}.',))
        frame = (export.sample_pixels((112, 112), 1)[0].permute(1, 2, 0) * 255).byte().numpy()
        result = runtime.pipeline.run([frame], frozenset(TASKS), labels)[0]
        assert result.depth.shape == result.labels.shape and result.normals.shape[-1] == 3
    finally:
        runtime.close()


@pytest.mark.skipif(WHY_NOT != '' or 'TensorrtExecutionProvider' not in (
    importlib.import_module('onnxruntime').get_available_providers() if not WHY_NOT else ()),
    reason='onnxruntime has no TensorRT execution provider (pip install onnxruntime-gpu)')
def test_onnxruntime_tensorrt_provider_caches_its_engines(model, tmp_path):
    logs = []
    backend = backends.create('onnxruntime', model, (112, 112), TASKS, CUDA, 'fp32',
                              tmp_path, logs.append, runtime_config(FILES))
    assert 'Tensorrt' in backend.describe()
    pixels = export.sample_pixels((112, 112), 2, CUDA)
    with torch.inference_mode():
        out = backend.infer(pixels, frozenset(TASKS))
    assert out.depth.shape[0] == 2
    assert any((tmp_path / 'ort-trt').iterdir())  # engines cached for the next start


@pytest.mark.slow
def test_b14_engine_at_448_parity_and_timing(tmp_path):
    """B/14-sized random weights at 448: build time, parity, and latency vs PyTorch."""
    from tipsv2_ros.model import random_weights
    paths = random_weights.write_random_checkpoint(tmp_path / 'b14', 'b14', seed=0)
    model = TipsV2.from_files(paths.vision, paths.text, paths.tokenizer,
                              depth_head=paths.depth_head,
                              normals_head=paths.normals_head).to(CUDA)
    options = {f'model.{k}': str(v) for k, v in paths._asdict().items()}
    logs = []
    start = time.perf_counter()
    backend = backends.create('tensorrt', model, (448, 448), TASKS, CUDA, 'fp16',
                              tmp_path / 'engines', logs.append,
                              runtime_config(options))
    build = time.perf_counter() - start
    print(f'\nB/14 448 export + build + gate: {build:.0f} s', *logs, sep='\n  ')
    pixels = export.sample_pixels((448, 448), 1, CUDA)
    reference = TorchBackend(model, (448, 448), TASKS)
    half = TorchBackend(model, (448, 448), TASKS, 'fp16')
    for name, run in (('tensorrt ' + backend.precision, backend), ('torch fp32', reference),
                      ('torch fp16 autocast', half)):
        with torch.inference_mode():
            for _ in range(5):
                run.infer(pixels, frozenset(TASKS))
            torch.cuda.synchronize()
            times = []
            for _ in range(20):
                start = time.perf_counter()
                run.infer(pixels, frozenset(TASKS))
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        print(f'{name}: median {sorted(times)[10] * 1e3:.1f} ms per frame '
              f'(depth + normals + features, {torch.cuda.get_device_name()})')
    print(f'parity of the accepted engines: {backend.report.describe()}')
    assert backend.report.passed()
