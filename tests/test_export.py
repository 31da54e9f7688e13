# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""ONNX export, the ONNX Runtime backend and backend switching, on the CPU.

The TensorRT orchestration is in tests/test_engine_build.py (a stand-in toolchain, on the
CPU) and tests/test_tensorrt.py (the real TensorRT, on a GPU).
"""
import itertools
import json
import shutil

import golden
from golden import FILES, ROLES
import numpy as np
import pytest
import torch

from tipsv2_ros.model import TASKS, TipsV2
from tipsv2_ros.ros.params import runtime_config
from tipsv2_ros.runtime import backends, export
from tipsv2_ros.runtime.backends.base import BackendError
from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
from tipsv2_ros.runtime.export import cache, parity
from tipsv2_ros.tasks import REGISTRY

onnx = pytest.importorskip('onnx')
onnxruntime = pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

SUBSETS = [s for n in (1, 2, 3) for s in itertools.combinations(TASKS, n)]


@pytest.fixture(scope='module')
def model() -> TipsV2:
    return golden.load_model()


def cpu_opset() -> int:
    """Return the opset the onnxruntime backend exports at on this CPU."""
    from tipsv2_ros.runtime.backends.onnx_backend import export_opset  # after the importorskip
    return export_opset(torch.device('cpu'))


# What the golden model is exported for at each golden size (each export takes seconds).
EXPORTS = {(112, 112): TASKS, (98, 126): ('depth', 'segmentation')}


@pytest.fixture(scope='module')
def exported(model, tmp_path_factory):
    """Export the golden model's parts at both golden sizes, each into its own cache.

    At the opset the onnxruntime backend exports on this CPU, so the backend and the CLI find
    these files in the cache.
    """
    found = {}
    for size, tasks in EXPORTS.items():
        folder = tmp_path_factory.mktemp(f'cache{size[0]}')
        parts = export.export_parts(model, tasks, size, backends.checkpoint_ids(tasks, ROLES),
                                    folder, log=lambda text: None, opset=cpu_opset())
        found[size] = folder, parts
    return found


@pytest.mark.parametrize('size', [(112, 112), (98, 126)], ids=['112', '98x126'])
def test_golden_export_matches_pytorch(model, exported, size):
    folder, parts = exported[size]
    assert list(parts) == list(export.parts_for(EXPORTS[size]))
    path = model.image_path(EXPORTS[size], size).eval()
    pixels = torch.rand(3, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        encoded = export.part_modules(path)['encoder'][0](pixels)
        expected = path(pixels)
    for name, part in parts.items():
        assert part.path.parent == folder and cache.sidecar(part.path).is_file()
        assert max(part.record['max_relative_error'].values()) <= parity.EXPORT_RTOL
        onnx.checker.check_model(str(part.path))
        session = onnxruntime.InferenceSession(str(part.path),
                                               providers=['CPUExecutionProvider'])
        assert [i.name for i in session.get_inputs()] == list(part.spec.inputs)
        assert [o.name for o in session.get_outputs()] == list(part.spec.outputs)
        feeds = ({'pixel_values': pixels} if name == 'encoder'
                 else dict(zip(part.spec.inputs, encoded[:8])))
        outputs = session.run(None, {k: v.numpy() for k, v in feeds.items()})  # batch 3
        if name == 'encoder':
            assert parity.max_relative_error(torch.from_numpy(outputs[-1]),
                                             expected.features) < 1e-4
        else:
            reference = expected.depth if name == 'depth' else expected.normals
            assert parity.max_relative_error(torch.from_numpy(outputs[0]), reference) < 1e-4


def test_onnxruntime_backend_equals_torch_for_every_subset(model, exported):
    from tipsv2_ros.runtime.backends.onnx_backend import OnnxRuntimeBackend
    _, parts = exported[(112, 112)]
    backend = OnnxRuntimeBackend({n: p.path for n, p in parts.items()}, (112, 112), TASKS)
    reference = TorchBackend(model, (112, 112), TASKS)
    ran = []
    run_part = backend._run_cpu
    backend._run_cpu = lambda part, feeds: (ran.append(part), run_part(part, feeds))[1]
    pixels = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    for subset in SUBSETS:
        ran.clear()
        ours, theirs = backend.infer(pixels, frozenset(subset)), reference.infer(
            pixels, frozenset(subset))
        assert ran == ['encoder'] + [h for h in ('depth', 'normals') if h in subset]
        for task in TASKS:
            a, b = ours.get(REGISTRY[task].output), theirs.get(REGISTRY[task].output)
            assert (a is None) == (task not in subset)
            if a is not None:
                assert a.dtype == torch.float32 and a.shape == b.shape
                assert parity.max_relative_error(a, b) < 1e-4
    assert 'onnxruntime on cpu at 112x112' in backend.describe()
    with pytest.raises(ValueError, match='not enabled'):
        OnnxRuntimeBackend({'encoder': parts['encoder'].path, 'depth': parts['depth'].path},
                           (112, 112), ['depth']).infer(pixels, frozenset({'normals'}))
    with pytest.raises(BackendError, match=r"no ONNX file for \['normals'\]"):
        OnnxRuntimeBackend({'encoder': parts['encoder'].path}, (112, 112), ['normals'])


def test_onnxruntime_exports_random_weights_and_reuses_the_cache(
        tiny_params, tmp_path, monkeypatch):
    """Random tiny weights, segmentation only: the encoder part alone, with features."""
    tasks = ('segmentation',)
    model = TipsV2.from_files(tiny_params['model.vision_weights'])
    with monkeypatch.context() as patch:  # an export that does not reproduce PyTorch
        patch.setattr(export, 'onnxruntime_errors', lambda *args: {'features': 0.02})
        with pytest.raises(export.ExportError, match=r'features 2\.0e-02; allowed 0\.001'):
            backends.create('onnxruntime', model, (112, 112), tasks, 'cpu',
                            cache_dir=tmp_path, log=print, config=runtime_config(tiny_params))
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith('.')] == []
    logs = []
    backend = backends.create('onnxruntime', model, (112, 112), tasks, 'cpu',
                              cache_dir=tmp_path, log=logs.append,
                              config=runtime_config(tiny_params))
    assert backend.name == 'onnxruntime'
    assert any('exporting the encoder' in line for line in logs)
    pixels = export.sample_pixels((112, 112), 2)
    ours = backend.infer(pixels, frozenset(tasks))
    theirs = TorchBackend(model, (112, 112), tasks).infer(pixels, frozenset(tasks))
    assert ours.depth is None and ours.normals is None
    assert parity.max_relative_error(ours.features, theirs.features) < 1e-4
    logs.clear()
    again = backends.create('onnxruntime', model, (112, 112), tasks, 'cpu',
                            cache_dir=tmp_path, log=logs.append,
                            config=runtime_config(tiny_params))
    assert again.name == 'onnxruntime' and logs == []  # from the cache, silently
    assert len(list(tmp_path.glob('*.onnx'))) == 1


def test_backend_errors_say_what_to_do(model, monkeypatch):
    def create(name, device='cpu', precision='auto', log=print):
        return backends.create(name, model, (112, 112), ['depth'], device, precision,
                               log=log)
    with pytest.raises(BackendError, match='expected one of'):
        create('openvino')
    with pytest.raises(BackendError, match='runs fp32 only'):
        create('onnxruntime', precision='fp16')
    with pytest.raises(BackendError, match='needs a CUDA device'):
        create('tensorrt')
    with pytest.raises(BackendError, match='precision'):
        create('torch', precision='int4')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(backends, '_installed', lambda module: module != 'tensorrt')
    with pytest.raises(BackendError, match='TensorRT is not installed: x86_64: scripts/setup.sh '
                       '--tensorrt .*Jetson: JetPack >= 6.1'):
        create('tensorrt', device='cuda')
    with pytest.raises(BackendError, match='pip install onnxruntime-gpu'):
        create('onnxruntime', device='cuda')
    monkeypatch.setattr(backends, '_installed', lambda module: module != 'onnxruntime')
    with pytest.raises(BackendError, match='onnxruntime is not installed: pip install'):
        create('onnxruntime')
    monkeypatch.setattr(backends, '_installed', lambda module: module != 'onnxscript')
    with pytest.raises(BackendError, match='pip install onnx onnxscript'):
        create('onnxruntime')


def test_auto_choice_and_fallback(model, monkeypatch):
    installed = {'onnxruntime', 'onnx', 'onnxscript'}
    monkeypatch.setattr(backends, '_installed', lambda module: module in installed)
    assert backends.candidates(torch.device('cpu')) == ['torch']  # no faster, costs an export
    assert backends.candidates(torch.device('cuda')) == ['torch']  # no CUDA provider here
    with monkeypatch.context() as patch:
        patch.setattr(backends, '_cuda_onnxruntime', lambda: True)
        assert backends.candidates(torch.device('cuda')) == ['onnxruntime', 'torch']
    installed.add('tensorrt')
    assert backends.candidates(torch.device('cuda')) == ['tensorrt', 'torch']
    assert backends.choose('torch', torch.device('cuda')) == 'torch'
    assert backends.resolve_precision('auto', 'tensorrt', torch.device('cuda')) == 'fp16'
    assert backends.resolve_precision('auto', 'onnxruntime', torch.device('cpu')) == 'fp32'

    def failing_export(*args, **kwargs):
        raise export.ExportError('ONNX export of the encoder failed: boom')
    monkeypatch.setattr(export, 'export_parts', failing_export)
    # As on a CUDA machine with ONNX Runtime's CUDA provider: a failed export falls back.
    monkeypatch.setattr(backends, 'candidates', lambda device: ['onnxruntime', 'torch'])
    logs = []
    backend = backends.create('auto', model, (112, 112), ['depth'], 'cpu', log=logs.append)
    assert backend.name == 'torch'
    assert 'onnxruntime is not usable (ONNX export of the encoder failed: boom)' in logs[0]
    assert logs[-1] == 'backend auto -> torch on cpu at 112x112 (fp32)'
    installed.clear()
    assert backends.create('auto', model, (112, 112), ['depth'], 'cpu',
                           log=logs.append).name == 'torch'


def test_checkpoint_ids_follow_the_files(tmp_path):
    ids = backends.checkpoint_ids(['depth'], ROLES)
    assert set(ids) == {'encoder', 'depth'}
    assert ids['encoder'] == cache.checkpoint_id([ROLES['vision_weights']])
    assert backends.checkpoint_ids(TASKS, {}) == {}
    missing = {**ROLES, 'depth_head': str(tmp_path / 'gone.zip')}
    assert set(backends.checkpoint_ids(TASKS, missing)) == {'encoder', 'normals'}


def test_corrupt_cached_onnx_is_rebuilt(model, exported):
    folder, parts = exported[(98, 126)]
    tasks = EXPORTS[(98, 126)]
    depth = parts['depth'].path
    data = bytearray(depth.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    depth.write_bytes(bytes(data))
    logs = []
    again = export.export_parts(model, tasks, (98, 126), backends.checkpoint_ids(tasks, ROLES),
                                folder, logs.append, cpu_opset())
    assert any('is corrupt (SHA-256 mismatch); rebuilding' in line for line in logs)
    assert sum(line.startswith('exporting') for line in logs) == 1  # the depth head only
    assert cache.load(again['depth'].path, again['depth'].record['key'], print)


def test_truncated_or_mismatched_onnx_is_re_exported(model, exported, monkeypatch, tmp_path):
    folder = tmp_path / 'cache'
    shutil.copytree(exported[(112, 112)][0], folder)  # the other tests keep theirs whole
    parts = {n: p._replace(path=folder / p.path.name)
             for n, p in exported[(112, 112)][1].items()}
    calls = []
    monkeypatch.setattr(export, '_export', lambda module, spec, *args: calls.append(
        spec.name) or {'key': {}, 'files': {}})
    depth = parts['depth'].path
    record = json.loads(cache.sidecar(depth).read_text())
    record['key']['torch'] = '1.0.0'
    cache.sidecar(depth).write_text(json.dumps(record))
    encoder = parts['encoder'].path
    encoder.write_bytes(encoder.read_bytes()[:1000])
    logs = []
    export.export_parts(model, TASKS, (112, 112), backends.checkpoint_ids(TASKS, ROLES),
                        folder, logs.append, cpu_opset())
    assert calls == ['encoder', 'depth']
    assert any('truncated or changed (1000 bytes' in line for line in logs)
    assert any(f"torch '1.0.0' (now '{torch.__version__}')" in line for line in logs)


def test_cli_export_prints_files_and_figures(exported, capsys):
    from tipsv2_ros.cli.main import build_parser
    folder, parts = exported[(112, 112)]
    argv = ['export', '--input-size', '112', '--out', str(folder)]
    for name, path in FILES.items():
        argv += ['--' + name.split('.')[1].replace('_', '-'), path]
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for part in parts.values():
        assert f'{part.path}  (' in out
    assert 'max relative error' in out and 'exporting' not in out  # all from the cache
    repo = folder / 'triton_repository'
    args = build_parser().parse_args(argv + ['--triton-repo', str(repo)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f'{repo}  (Triton repository' in out
    # ... and how to serve it locked down: TLS, mutual TLS, control APIs behind a header.
    assert f'tritonserver --model-repository={repo}' in out
    for flag in ('--grpc-use-ssl=true', '--grpc-use-ssl-mutual=true', '--grpc-server-cert=',
                 '--grpc-server-key=', '--grpc-root-cert=', '--grpc-restricted-protocol='
                 'model-repository,shared-memory,statistics,trace,logging:tipsv2-admin-key='):
        assert flag in out, flag
    for name in ('tipsv2_image_path', 'tipsv2_image_path_encoder', 'tipsv2_image_path_depth'):
        assert (repo / name / 'config.pbtxt').is_file(), name
    args = build_parser().parse_args(argv + ['--engine', '--device', 'cpu'])
    assert args.func(args) == 1
    assert '--engine needs a CUDA device' in capsys.readouterr().err


def test_sample_pixels_are_the_room_frames():
    pixels = export.sample_pixels((98, 126), 3)
    assert pixels.shape == (3, 3, 98, 126) and pixels.dtype == torch.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.std() > 0.05
    assert export.parts_for(['segmentation']) == ('encoder',)
    assert export.parts_for(['normals', 'depth']) == ('encoder', 'depth', 'normals')
    assert export.intermediate_names(2) == ('patches_0', 'cls_0', 'patches_1', 'cls_1')
    assert np.isfinite(pixels.numpy()).all()
