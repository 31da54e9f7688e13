# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The cache keys and sidecars, the parity metrics and the TensorRT helpers that need no GPU."""
import hashlib
import json
import math
import subprocess
import sys

import pytest
import torch

from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.runtime.backends.tensorrt import build as tensorrt_build
from tipsv2_ros.runtime.export import cache, parity


def _store(tmp_path, name='part.onnx', content=b'x' * 5000, key=None):
    temporary = tmp_path / f'.{name}.tmp'
    temporary.write_bytes(content)
    key = key or {'part': 'encoder', 'torch': '2.13.0', 'input_size': (112, 112)}
    return tmp_path / name, cache.store(tmp_path / name, {name: temporary}, key), key


def test_store_then_load_round_trips(tmp_path):
    path, record, key = _store(tmp_path)
    assert path.read_bytes() == b'x' * 5000 and not (tmp_path / '.part.onnx.tmp').exists()
    assert record['files']['part.onnx'] == {'size': 5000,
                                            'sha256': hashlib.sha256(b'x' * 5000).hexdigest()}
    logs = []
    assert cache.load(path, key, logs.append) == json.loads(cache.sidecar(path).read_text())
    assert logs == []
    assert cache.load(tmp_path / 'never.onnx', key, logs.append) is None and logs == []


@pytest.mark.parametrize('damage, reason', [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), 'truncated or changed (100 bytes'),
    (lambda p: p.write_bytes(b'y' + p.read_bytes()[1:]), 'corrupt (SHA-256 mismatch); rebuilding'),
    (lambda p: p.unlink(), 'part.onnx is missing'),
    (lambda p: cache.sidecar(p).unlink(), 'no valid sidecar (interrupted build?)'),
    (lambda p: cache.sidecar(p).write_text('{"key": '), 'no valid sidecar'),
    (lambda p: cache.sidecar(p).write_text('[1, 2]'), 'no valid sidecar'),
], ids=['truncated', 'flipped', 'missing', 'no-sidecar', 'bad-json', 'not-a-record'])
def test_damaged_artefacts_are_rebuilt_with_a_reason(tmp_path, damage, reason):
    path, _, key = _store(tmp_path)
    damage(path)
    logs = []
    assert cache.load(path, key, logs.append, 'ONNX encoder') is None
    assert len(logs) == 1 and reason in logs[0] and 'rebuilding' in logs[0]
    assert logs[0].startswith('WARNING: ONNX encoder: ' if 'SHA' in reason else 'ONNX encoder: ')
    assert logs[0].endswith('rebuilding') or 'SHA' in reason


def test_cache_folders_are_owner_only_and_unsafe_ones_refused(tmp_path):
    import os
    import stat
    folder = cache.secure_folder(tmp_path / 'a' / 'engines')
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    _store(folder)  # store and lock work inside it
    for mode in (0o777, 0o770, 0o702):
        folder.chmod(mode)
        with pytest.raises(cache.CacheError, match=f'writable by others.*chmod 700 {folder}'):
            cache.secure_folder(folder)
        with pytest.raises(cache.CacheError):
            with cache.locked(folder / 'part.onnx'):
                pass
    folder.chmod(0o755)  # readable by others is fine: nobody else can put a file there
    assert cache.secure_folder(folder) == folder
    if os.geteuid() == 0:
        os.chown(folder, 4321, 4321)
        with pytest.raises(cache.CacheError, match='belongs to uid 4321.*use a folder of'):
            cache.secure_folder(folder)


def test_a_key_mismatch_names_what_changed(tmp_path):
    path, _, key = _store(tmp_path)
    logs = []
    changed = {**key, 'torch': '2.14.0', 'gpu': 'Orin'}
    assert cache.load(path, changed, logs.append, 'TensorRT encoder') is None
    assert ("was built for gpu None (now 'Orin'), torch '2.13.0' (now '2.14.0'); rebuilding"
            in logs[0])
    assert cache.describe_change({'a': 1}, {'a': 1}) == ''


def test_fingerprint_prefers_the_download_record(tmp_path):
    weights = tmp_path / 'vision.npz'
    weights.write_bytes(b'w' * 1000)
    whole = 'sha256:' + hashlib.sha256(b'w' * 1000).hexdigest()
    assert cache.fingerprint(weights) == whole
    record = tmp_path / 'vision.npz.verified.json'
    record.write_text(json.dumps({'size': 1000, 'sha256': 'ab' * 32}))
    assert cache.fingerprint(weights) == 'sha256:' + 'ab' * 32
    record.write_text(json.dumps({'size': 999, 'sha256': 'ab' * 32}))  # stale record
    assert cache.fingerprint(weights) == whole


def test_large_files_are_sampled_and_changes_still_show(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, '_SMALL', 1000)
    monkeypatch.setattr(cache, '_CHUNK', 100)
    weights = tmp_path / 'big.npz'
    data = bytearray(range(256)) * 40
    weights.write_bytes(bytes(data))
    sampled = cache.fingerprint(weights)
    assert sampled.startswith('sampled:')
    for offset in (0, len(data) // 2, len(data) - 1):  # head, middle, tail (zip directory)
        changed = bytearray(data)
        changed[offset] ^= 1
        weights.write_bytes(bytes(changed))
        assert cache.fingerprint(weights) != sampled
    weights.write_bytes(bytes(data) + b'!')
    assert cache.fingerprint(weights) != sampled


def test_checkpoint_and_tensor_ids(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.write_bytes(b'1')
    b.write_bytes(b'2')
    assert cache.checkpoint_id([a, b]) == cache.checkpoint_id([b, a]) != cache.checkpoint_id([a])
    layer = torch.nn.Linear(3, 2)
    same = cache.tensors_id(layer)
    assert cache.tensors_id(layer) == same
    with torch.no_grad():
        layer.bias[0] += 1e-6
    assert cache.tensors_id(layer) != same
    assert len(cache.digest({'b': 1, 'a': [1, 2]})) == 12
    assert cache.digest({'b': 1, 'a': [1, 2]}) == cache.digest({'a': [1, 2], 'b': 1})


def test_lock_and_atomic_json(tmp_path):
    with cache.locked(tmp_path / 'sub' / 'x.engine'):
        cache.write_json(tmp_path / 'sub' / 'x.json', {'a': 1})
    assert json.loads((tmp_path / 'sub' / 'x.json').read_text()) == {'a': 1}
    assert [p.name for p in (tmp_path / 'sub').iterdir() if p.suffix == '.tmp'] == []


# Parity metrics on constructed cases --------------------------------------------------------

def test_max_relative_error():
    reference = torch.tensor([0.0, 2.0, -4.0], dtype=torch.float64)
    assert parity.max_relative_error(reference + torch.tensor([0, 0, 4e-3]), reference) == (
        pytest.approx(1e-3))
    small = torch.tensor([0.001, 0.002])  # absolute below 1
    assert parity.max_relative_error(small + 5e-4, small) == pytest.approx(5e-4)
    assert parity.max_relative_error(torch.tensor([math.nan]), torch.tensor([0.0])) == math.inf
    with pytest.raises(ValueError, match='shapes differ'):
        parity.max_relative_error(torch.zeros(2), torch.zeros(3))


def test_depth_relative_error():
    reference = torch.full((1, 1, 4, 4), 2.0)
    ours = reference.clone()
    ours[..., :2, :] *= 1.02  # half the pixels 2% off
    assert parity.depth_relative_error(ours, reference) == pytest.approx(0.01)


def test_normals_angular_error_is_a_median_in_degrees():
    angle = math.radians(1.0)
    reference = torch.zeros(1, 3, 2, 5)
    reference[:, 2] = 1.0
    ours = torch.zeros_like(reference)
    ours[:, 0], ours[:, 2] = math.sin(angle), math.cos(angle)
    ours[:, :, 0, :2] = torch.tensor([1.0, 0.0, 0.0])[:, None]  # 2 of 10 pixels 90 deg off
    assert parity.normals_angular_error(3 * ours, reference) == pytest.approx(1.0, abs=1e-6)
    assert parity.normals_angular_error(ours * math.nan, reference) == math.inf


def test_argmax_agreement():
    classifier = torch.eye(4)
    reference = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])].reshape(1, 2, 4, 4)
    ours = reference.clone()
    ours[0, 0, 0] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert parity.argmax_agreement(ours, reference, classifier) == pytest.approx(7 / 8)
    assert parity.argmax_agreement(ours * math.nan, reference, classifier) == 0.0


def test_report_thresholds_and_compare():
    good = parity.ParityReport(depth=0.004, normals=0.7, segmentation=0.995)
    assert good.passed() and good.describe() == 'depth 0.40%, normals 0.70 deg, segmentation 99.5%'
    bad = parity.ParityReport(depth=0.02, normals=math.nan, segmentation=0.5)
    assert [f.split()[0] for f in bad.failures()] == ['depth', 'normals', 'segmentation']
    assert parity.ParityReport().passed() and parity.ParityReport().describe() == (
        'nothing compared')
    assert not parity.ParityReport(depth=0.01).passed()  # the bound is strict
    assert parity.ParityReport(depth=0.01).passed(parity.Thresholds(depth=0.02))
    depth = torch.rand(1, 1, 4, 4) + 1
    normals = torch.nn.functional.normalize(torch.randn(1, 3, 4, 4), dim=1)
    features = torch.nn.functional.normalize(torch.randn(1, 2, 2, 8), dim=-1)
    outputs = DenseOutputs(depth=depth, normals=normals, features=features)
    report = parity.compare(outputs, outputs, torch.eye(8)[:3])
    assert report == parity.ParityReport(depth=0.0, normals=pytest.approx(0.0, abs=1e-5),
                                         segmentation=1.0)
    assert parity.compare(DenseOutputs(depth=depth, normals=None, features=features),
                          outputs) == parity.ParityReport(depth=0.0, normals=None,
                                                          segmentation=None)


# TensorRT helpers that need no TensorRT -------------------------------------------------------

def test_tensorrt_version_policy():
    assert tensorrt_build.version_tuple('10.13.3.9') == (10, 13)
    assert tensorrt_build.version_tuple('11') == (11, 0)
    assert not tensorrt_build.strongly_typed('10.3.0', has_fp16_flag=True)  # JetPack 6
    assert not tensorrt_build.strongly_typed('10.11.0.33')
    assert tensorrt_build.strongly_typed('10.12.0.36')
    assert tensorrt_build.strongly_typed('11.1.0')
    assert tensorrt_build.strongly_typed('10.8.0', has_fp16_flag=False)


def test_layer_metadata_names_onnx_nodes():
    fused = '[ONNX Layer: node_MatMul_3]\x1f[ONNX Layer: /blocks.0/norm1/LayerNorm]'
    assert tensorrt_build.onnx_nodes(fused) == {'node_MatMul_3', '/blocks.0/norm1/LayerNorm'}
    assert tensorrt_build.onnx_nodes('') == set() == tensorrt_build.onnx_nodes(None)


def test_modules_import_without_tensorrt():
    """The backend's modules import anywhere; TensorRT itself loads only to build or run."""
    probe = ('import sys; from tipsv2_ros.runtime.backends.tensorrt import backend, engine; '
             'print(callable(backend.TensorRTBackend.build), "tensorrt" in sys.modules)')
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True)
    assert result.stdout.split() == ['True', 'False'], result.stderr


def test_missing_tensorrt_names_the_package():
    try:
        import tensorrt  # noqa: F401
        pytest.skip('TensorRT is installed here')
    except ImportError:
        pass
    with pytest.raises(Exception, match='TensorRT is not installed.*setup.sh --tensorrt.*JetPack'):
        tensorrt_build.import_tensorrt()
