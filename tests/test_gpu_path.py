# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The CPU-testable pieces of the GPU path: names, keys, alignment, defaults, transfers.

What needs TensorRT and a CUDA GPU is in tests/test_tensorrt.py (skipped without them).
"""
import json

import numpy as np
import pytest
import torch

from tipsv2_ros.runtime import backends, jetson
from tipsv2_ros.runtime.backends.base import BackendError
from tipsv2_ros.runtime.backends.tensorrt import build as tensorrt_build
from tipsv2_ros.runtime.backends.tensorrt import cuda_buffers
from tipsv2_ros.runtime.backends.tensorrt import files as engine_files
from tipsv2_ros.runtime.backends.tensorrt import inspection as tensorrt_inspect
from tipsv2_ros.runtime.frame import transfer
from tipsv2_ros.runtime.serving import container as triton_container

KEY = {'variant': 'b14', 'input_size': [448, 448], 'part': 'encoder', 'precision': 'fp16',
       'tensorrt': '10.13.3.9', 'gpu': 'NVIDIA H200 (sm_90, 132 SMs)', 'max_batch': 4,
       'checkpoint': 'c', 'config': 'k', 'outputs': ['patches_0'], 'network': 'strongly typed'}


def test_engine_file_names_carry_tensorrt_gpu_and_batch():
    gpu = engine_files.gpu_identity('NVIDIA H200', 9, 0, 132)
    assert gpu == KEY['gpu']
    name = engine_files.engine_name(KEY)
    assert name.startswith('b14-448x448-encoder-fp16-trt10.13.3.9-nvidia-h200-sm90-132sm-b4-')
    assert name.endswith('.engine')
    # Each of what the engine only works with gives another file; the versions of the
    # weights and graph (same place in the cache) do not.
    others = [{**KEY, 'tensorrt': '10.14.1.48'}, {**KEY, 'max_batch': 1},
              {**KEY, 'gpu': engine_files.gpu_identity('NVIDIA Jetson AGX Orin', 8, 7, 16)},
              {**KEY, 'gpu': engine_files.gpu_identity('NVIDIA Jetson AGX Orin', 8, 7, 8)},
              {**KEY, 'precision': 'fp16-safe'}, {**KEY, 'checkpoint': 'other weights'}]
    names = {engine_files.engine_name(key) for key in others}
    assert len(names) == len(others) and name not in names
    assert engine_files.engine_name({**KEY, 'onnx': 'another export'}) == name
    assert engine_files.timing_cache_name('10.13.3.9', gpu) == \
        'timing-trt10.13.3.9-nvidia-h200-sm90-132sm.cache'


def test_alignment_checks_with_fake_pointers():
    assert cuda_buffers.is_aligned(0x7f0000000000) and cuda_buffers.is_aligned(512)
    assert not cuda_buffers.is_aligned(0x7f0000000040) and not cuda_buffers.is_aligned(208)

    class Context:
        def __init__(self, accept):
            self.accept, self.bound = accept, {}

        def set_tensor_address(self, name, address):
            self.bound[name] = address
            return self.accept
    context = Context(True)
    cuda_buffers.bind(context, 'pixel_values', 0x7f0000000100)
    assert context.bound == {'pixel_values': 0x7f0000000100}
    with pytest.raises(BackendError, match='not aligned to 256'):
        cuda_buffers.bind(context, 'depth', 0x7f0000000140)
    assert 'depth' not in context.bound  # refused before TensorRT sees it
    with pytest.raises(BackendError, match='TensorRT refused the address'):
        cuda_buffers.bind(Context(False), 'depth', 0x7f0000000200)


@pytest.mark.parametrize('size', [(98, 126), (364, 490), (476, 476), (448, 448)])
def test_batch_views_are_realigned_when_the_patch_count_is_not_a_multiple_of_16(size):
    """frame[None] / split chunks start i * 3*H*W*4 bytes in: 256-aligned only for some sizes."""
    pixels = torch.rand(3, 3, *size)
    offset = pixels[1].data_ptr() - pixels.data_ptr()
    patches = (size[0] // 14) * (size[1] // 14)
    assert (offset % 256 == 0) == (patches % 16 == 0)
    # A buffer whose start is 256-aligned, then views of it at the frame offsets.
    raw = torch.empty(pixels.numel() * 4 + 256, dtype=torch.uint8)
    start = (-raw.data_ptr()) % 256
    base = raw[start:start + pixels.numel() * 4].view(torch.float32).view(pixels.shape)
    base.copy_(pixels)
    assert cuda_buffers.aligned(base[0]) is base[0] or \
        cuda_buffers.aligned(base[0]).data_ptr() == base[0].data_ptr()
    chunk = base[1]
    fixed = cuda_buffers.aligned(chunk)
    if patches % 16 == 0:
        assert fixed.data_ptr() == chunk.data_ptr()  # no copy needed
    else:
        assert fixed.data_ptr() != chunk.data_ptr() and torch.equal(fixed, chunk)


def test_engines_share_one_block_of_activation_memory():
    class Runner:
        def __init__(self, size):
            self.activation_bytes, self.given = size, None

        def use_activation_memory(self, address, size):
            self.given = (address, size)
    runners = [Runner(3000), Runner(70_000), Runner(512), lambda feeds: feeds]
    shared = cuda_buffers.SharedActivations(runners, torch.device('cpu'))
    assert shared.bytes == 70_000 and cuda_buffers.is_aligned(shared.address)
    start = shared.address - shared.buffer.data_ptr()
    assert 0 <= start < 256 and shared.buffer.numel() - start >= 70_000
    assert {r.given for r in runners[:3]} == {(shared.address, 70_000)}


def test_jetson_defaults(tmp_path):
    release = tmp_path / 'nv_tegra_release'
    assert not jetson.is_jetson(release)
    assert jetson.default_max_batch(release) == 4 and jetson.default_workspace_mb(release) == 4096
    release.write_text('# R36 (release), REVISION: 4.0\n')
    assert jetson.is_jetson(release)
    assert jetson.default_max_batch(release) == 1 and jetson.default_workspace_mb(release) == 1024


def test_declared_tensorrt_parameters():
    pytest.importorskip('rclpy')
    from tipsv2_ros.ros.params import SPECS
    assert SPECS['tensorrt.max_batch'].default == 0 and SPECS['tensorrt.max_batch'].read_only
    assert '1 on a Jetson' in SPECS['tensorrt.max_batch'].description
    assert SPECS['tensorrt.workspace_mb'].default == 0


def test_tensorrt_before_10_is_refused_clearly():
    with pytest.raises(BackendError, match=r'TensorRT 8\.6\.2\.3 is too old.*>= 10\.0.*JetPack'):
        tensorrt_build.check_version('8.6.2.3')
    tensorrt_build.check_version('10.3.0.30')
    tensorrt_build.check_version('11.0.0')
    assert tensorrt_build.strongly_typed('10.12.0') and not tensorrt_build.strongly_typed('10.3')


def test_auto_on_cuda_without_tensorrt_says_so_once(monkeypatch):
    from golden import load_model
    monkeypatch.setattr(backends, '_WARNED', set())
    monkeypatch.setattr(backends, '_installed', lambda module: module != 'tensorrt')
    monkeypatch.setattr(backends, '_cuda_onnxruntime', lambda: False)
    model = load_model()
    logs = []
    for _ in range(2):
        backend = backends.create('auto', model, (28, 28), ['depth'], torch.device('cuda'),
                                  log=logs.append)
        assert backend.name == 'torch'
    warnings = [line for line in logs if line.startswith('WARNING')]
    assert len(warnings) == 1
    assert 'without TensorRT: the tensorrt Python package is not installed' in warnings[0]
    assert 'scripts/setup.sh --tensorrt' in warnings[0] and 'JetPack >= 6.1' in warnings[0]
    logs.clear()
    backends.create('auto', model, (28, 28), ['depth'], torch.device('cpu'), log=logs.append)
    assert not any(line.startswith('WARNING') for line in logs)  # a CPU needs no TensorRT


def test_onnxruntime_tensorrt_provider_options():
    from tipsv2_ros.runtime.backends import onnx_backend
    options = onnx_backend.tensorrt_provider_options(
        {'patches_0': (768, 32, 32), 'cls_0': (768,)}, 4, '/cache/ort-trt', 0, 0x5a5a00, 1024)
    assert options['trt_profile_min_shapes'] == 'patches_0:1x768x32x32,cls_0:1x768'
    assert options['trt_profile_opt_shapes'] == options['trt_profile_min_shapes']
    assert options['trt_profile_max_shapes'] == 'patches_0:4x768x32x32,cls_0:4x768'
    assert options['trt_engine_cache_enable'] and options['trt_timing_cache_enable']
    assert options['trt_engine_cache_path'] == '/cache/ort-trt'
    assert options['user_compute_stream'] == str(0x5a5a00)
    assert options['trt_max_workspace_size'] == str(1024 << 20)
    assert options['trt_fp16_enable'] is False  # no parity gate in ORT


def test_outputs_come_back_in_one_packed_copy():
    tensors = [torch.rand(7, 5), torch.rand(3, 3, 3).permute(1, 2, 0),
               torch.randint(0, 255, (5, 3), dtype=torch.uint8),
               torch.randint(0, 255, (2, 9), dtype=torch.uint8)]
    segments, total = transfer.layout(tensors)
    assert all(s.offset % transfer.SEGMENT_ALIGNMENT == 0 for s in segments)
    packed = transfer.pack(tensors, torch.empty(total, dtype=torch.uint8), segments)
    for array, tensor in zip(transfer.unpack(packed, segments), tensors):
        assert array.dtype == tensor.numpy().dtype and array.flags.c_contiguous
        np.testing.assert_array_equal(array, tensor.numpy())
    arrays = transfer.to_host([tensors[0], None, tensors[2].half()])
    assert arrays[1] is None and arrays[2].dtype == np.float32


def test_inspector_summary_counts_precisions_and_fused_attention():
    layers = [
        {'Name': 'LayerNorm_0', 'LayerType': 'Normalization',
         'Outputs': [{'Format/Datatype': 'Row major linear FP32 format'}]},
        {'Name': '__myl_MulSumMulAdd', 'LayerType': 'kgen', 'TacticName': 'sm90_xmma_fmha_v2',
         'Outputs': [{'Format/Datatype': 'Row major linear FP16 format'}]},
        {'Name': 'MatMul_3', 'LayerType': 'CaskGemm', 'TacticName': 'sm90_xmma_gemm_f16',
         'Outputs': [{'Format/Datatype': 'Row major linear FP16 format'}]},
        'Reformat_7']
    summary = tensorrt_inspect.summarise(layers)
    assert summary == {'layers': 4, 'precisions': {'FP32': 1, 'FP16': 2, '?': 1},
                       'fused_attention': ['__myl_MulSumMulAdd']}
    json.dumps(summary)


def test_triton_repository_names_its_container():
    assert triton_container.container_for('10.8.0.43') == 'nvcr.io/nvidia/tritonserver:25.01-py3'
    note = triton_container.serving_note('10.3.0.30', 'NVIDIA A10 (sm_86, 72 SMs)')
    assert 'tritonserver:24.08-py3' in note and 'TensorRT 10.3.0.30 on NVIDIA A10' in note
    assert triton_container.container_for('10.99.1') is None


def _setup_plan(tmp_path, *args, **env):
    import os
    import pathlib
    import subprocess
    root = pathlib.Path(__file__).resolve().parents[1]
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith('TIPSV2_') and k != 'ROS_DISTRO'}
    environment['TIPSV2_TEGRA_RELEASE'] = str(tmp_path / 'absent')
    environment.update(env)
    result = subprocess.run(['bash', str(root / 'scripts' / 'setup.sh'), '--dry-run', *args],
                            env=environment, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


def test_setup_plans_tensorrt_per_platform(tmp_path):
    code, out = _setup_plan(tmp_path)
    assert code == 0 and 'plan: tensorrt none' in out and 'dry run: nothing was changed' in out
    assert 'download.pytorch.org/whl/cpu' in out and '(isolated)' in out
    code, out = _setup_plan(tmp_path, '--tensorrt', TIPSV2_TORCH='cu128')
    assert code == 0, out
    assert 'tensorrt-cu12==10.16.1.11 from https://pypi.nvidia.com (CUDA 12.8, like PyTorch)' \
        in out
    assert 'onnxruntime-gpu (requirements/tensorrt.txt)' in out and 'whl/cu128' in out
    code, out = _setup_plan(tmp_path, '--tensorrt', TIPSV2_TORCH='cu130',
                            TIPSV2_TENSORRT='11.4.0.106')
    assert code == 0 and 'tensorrt-cu13==11.4.0.106' in out
    code, out = _setup_plan(tmp_path, '--tensorrt')  # a CPU torch has no CUDA to match
    assert code == 1 and 'set TIPSV2_TORCH=cu126, cu128 or cu130' in out
    release = tmp_path / 'nv_tegra_release'
    release.write_text('# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic\n')
    code, out = _setup_plan(tmp_path, TIPSV2_TEGRA_RELEASE=str(release))
    assert code == 0, out
    assert 'Jetson (L4T 36.4)' in out and '--system-site-packages' in out
    assert "JetPack's apt TensorRT (python3-libnvinfer" in out and 'jetson-ai-lab' in out
    assert 'apt ROS 2' in out and '/usr/bin/python3' in out
    release.write_text('# R36 (release), REVISION: 3.0, GCID: 1\n')  # JetPack 6.0: TensorRT 8.6
    code, out = _setup_plan(tmp_path, TIPSV2_TEGRA_RELEASE=str(release))
    assert code == 1 and 'needs JetPack >= 6.1 (L4T R36.4)' in out


def test_requirements_install_on_python_3_10():
    """Pins without cp310 wheels apply from Python 3.11 on (Humble and JetPack 6 run 3.10).

    Checked with ``pip download --no-deps --python-version 3.10``: onnxruntime 1.23.2, Pillow
    12.3.0 and onnxruntime-gpu 1.23.2 are the last releases with cp310 wheels.
    """
    import pathlib
    from packaging.requirements import Requirement
    root = pathlib.Path(__file__).resolve().parents[1]
    no_cp310 = {'onnxruntime': '1.32.0', 'pillow': '13.0.0', 'onnxruntime-gpu': '1.31.1'}
    for name in ('base.txt', 'tensorrt.txt', 'pytriton.txt'):
        for line in (root / 'requirements' / name).read_text().splitlines():
            if not line.strip() or line.startswith('#'):
                continue
            requirement = Requirement(line)
            pinned = str(requirement.specifier).lstrip('=')
            if no_cp310.get(requirement.name.lower()) == pinned:
                assert requirement.marker is not None, line
                assert not requirement.marker.evaluate({'python_version': '3.10'}), line
                assert requirement.marker.evaluate({'python_version': '3.11'}), line
