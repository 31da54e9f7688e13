# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The TensorRT engine logic on the CPU: opsets, cache, parity gate, fp16 fallback, mixed types.

A stand-in toolchain "builds" the (mixed-precision) ONNX and "runs" it in onnxruntime, so the
orchestration around TensorRT (what is built from which file, what is cached, what the gate
decides) is tested without a GPU; the real TensorRT build is in tests/test_tensorrt.py.
"""
import hashlib
import pathlib

import golden
from golden import ROLES
import pytest
import torch

from tipsv2_ros.model import TASKS, TipsV2
from tipsv2_ros.runtime import backends, export
from tipsv2_ros.runtime.backends.base import BackendError
from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
from tipsv2_ros.runtime.export import parity

onnx = pytest.importorskip('onnx')
onnxruntime = pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')


@pytest.fixture(scope='module')
def model() -> TipsV2:
    return golden.load_model()


@pytest.fixture(scope='module')
def exported_for_tensorrt(model, tmp_path_factory):
    """Export the parts at 112 at the opset TensorRT reads, as its backend does."""
    folder = tmp_path_factory.mktemp('cache_tensorrt')
    return folder, export.export_parts(model, TASKS, (112, 112),
                                       backends.checkpoint_ids(TASKS, ROLES), folder,
                                       log=lambda text: None)


def test_cpu_export_fuses_attention_and_tensorrt_keeps_opset_18(
        model, exported_for_tensorrt, monkeypatch):
    from tipsv2_ros.runtime.backends import onnx_backend
    cpu, gpu = torch.device('cpu'), torch.device('cuda')
    assert onnx_backend.export_opset(gpu) == export.OPSET == 18
    cpu_opset = onnx_backend.export_opset(cpu)
    folder, for_tensorrt = exported_for_tensorrt
    # What backend onnxruntime exports on this CPU, into the same cache.
    for_cpu = export.export_parts(model, ['segmentation'], (112, 112),
                                  backends.checkpoint_ids(TASKS, ROLES), folder,
                                  log=lambda text: None, opset=cpu_opset)
    ops = {}
    for name, part in (('cpu', for_cpu['encoder']), ('tensorrt', for_tensorrt['encoder'])):
        ops[name] = {node.op_type for node in onnx.load(str(part.path)).graph.node}
        assert part.record['key']['opset'] == (cpu_opset if name == 'cpu' else 18)
    assert 'Softmax' in ops['tensorrt'] and 'Attention' not in ops['tensorrt']
    if cpu_opset == 23:
        assert {'Attention', 'Gelu'} <= ops['cpu'] and 'Softmax' not in ops['cpu']
    # One cache holds both without overwriting: the opset is part of the file name.
    assert for_cpu['encoder'].path != for_tensorrt['encoder'].path
    assert for_tensorrt['encoder'].path.is_file()
    monkeypatch.setattr(onnx_backend.onnxruntime, '__version__', '1.22.1')
    assert onnx_backend.export_opset(cpu) == 18  # before onnxruntime fused opset 23
    monkeypatch.setattr(onnx_backend.onnxruntime, '__version__', '1.23.0')
    assert onnx_backend.export_opset(cpu) == 23


def _fake_toolchain(strong=True, builds=None, version='10.99-fake', broken=()):
    """Stand in for TensorRT: keep the ONNX an engine is built from, run it in onnxruntime.

    ``broken``: (part, level) pairs whose "engine" returns its outputs scaled by 1.5.
    """
    from tipsv2_ros.runtime.backends.tensorrt.backend import Toolchain
    made = {}

    def build(onnx_path, precision, fp32_nodes, max_batch, log, strongly_typed, settings):
        builds.append((pathlib.Path(onnx_path).name, precision, len(fp32_nodes)))
        assert settings.timing_cache.endswith(f'timing-trt{version}-fake-gpu-sm00-2sm.cache')
        blob = pathlib.Path(onnx_path).read_bytes()
        part = pathlib.Path(onnx_path).name.split('-')[0].split('.')[0]
        made[hashlib.sha256(blob).hexdigest()] = (part, precision)
        return blob

    def load(blob, device):
        runner = _load(blob, device)
        if made.get(hashlib.sha256(blob).hexdigest()) not in broken:
            return runner
        return lambda feeds: {k: v * 1.5 for k, v in runner(feeds).items()}
    return Toolchain(version, 'Fake GPU (sm_00, 2 SMs)', strong, build, load)


def _load(blob, device):
    """Run the ONNX bytes in onnxruntime (the stand-in engine)."""
    try:
        session = onnxruntime.InferenceSession(blob, providers=['CPUExecutionProvider'])
    except Exception as error:
        from tipsv2_ros.runtime.backends.tensorrt.engine import EngineLoadError
        raise EngineLoadError(str(error)) from None
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: dict(zip(names, map(torch.from_numpy, session.run(
        names, {k: v.numpy() for k, v in feeds.items()}))))


def test_engine_gate_passes_and_the_cache_is_reused(model, exported_for_tensorrt):
    from tipsv2_ros.runtime.backends.tensorrt.backend import measure, TensorRTBackend
    folder, _ = exported_for_tensorrt
    builds, logs = [], []
    backend = TensorRTBackend.build(model, (112, 112), TASKS, 'cpu', 'fp16', folder,
                                    backends.checkpoint_ids(TASKS, ROLES), logs.append,
                                    toolchain=_fake_toolchain(builds=builds))
    # Strongly typed: each part built from its fp16 variant, nothing pinned.
    assert builds == [(f'{p}-fp16.onnx', 'fp16', 0) for p in ('encoder', 'depth', 'normals')]
    assert backend.precision == 'fp16' and backend.report.passed()
    assert backend.report.segmentation is not None and 'pass the parity gate' in logs[-1]
    pixels = export.sample_pixels((112, 112), 5)
    ours = backend.infer(pixels, frozenset(TASKS))  # 5 frames: chunks of max_batch 4
    theirs = TorchBackend(model, (112, 112), TASKS).infer(pixels, frozenset(TASKS))
    assert parity.compare(ours, theirs).passed()
    no_text = TipsV2(model.config, model.vision, heads=dict(model.heads))
    assert measure(backend, no_text).segmentation == 1.0  # fixed random label directions
    builds.clear()
    engine = backend.files['depth']
    engine.write_bytes(engine.read_bytes()[:-10])
    logs.clear()
    TensorRTBackend.build(model, (112, 112), TASKS, 'cpu', 'fp16', folder,
                          backends.checkpoint_ids(TASKS, ROLES), logs.append,
                          toolchain=_fake_toolchain(builds=builds))
    assert builds == [('depth-fp16.onnx', 'fp16', 0)]  # the others came from the cache
    assert any('TensorRT depth: ' in line and 'truncated' in line for line in logs)
    builds.clear()
    logs.clear()
    upgraded = TensorRTBackend.build(model, (112, 112), TASKS, 'cpu', 'fp16', folder,
                                     backends.checkpoint_ids(TASKS, ROLES), logs.append,
                                     toolchain=_fake_toolchain(builds=builds,
                                                               version='11.0-fake'))
    assert len(builds) == 3
    # The TensorRT version, the GPU and the batch name the file: another TensorRT (or GPU
    # sharing the cache folder) gets its own engines and leaves the others in place.
    for part, path in upgraded.files.items():
        assert f'-112x112-{part}-fp16-trt11.0-fake-fake-gpu-sm00-2sm-b4-' in path.name
        assert backend.files[part].is_file() and backend.files[part] != path
    builds.clear()
    batch2 = TensorRTBackend.build(model, (112, 112), TASKS, 'cpu', 'fp16', folder,
                                   backends.checkpoint_ids(TASKS, ROLES), logs.append,
                                   max_batch=2, toolchain=_fake_toolchain(builds=builds))
    assert len(builds) == 3 and all('-b2-' in p.name for p in batch2.files.values())


def test_failing_fp16_engine_falls_back_with_a_warning(model, exported_for_tensorrt):
    from tipsv2_ros.runtime.backends.tensorrt.backend import TensorRTBackend
    folder, exported_parts = exported_for_tensorrt
    parts = list(exported_parts.values())
    builds, logs, gated = [], [], []

    def gate(backend):  # TensorRT 10.3-style broken fp16 ViT: near-single-class output
        gated.append(backend.precision)
        if backend.precision == 'fp16':
            return parity.ParityReport(depth=0.003, normals=0.5, segmentation=0.41)
        return parity.ParityReport(depth=0.001, normals=0.2, segmentation=0.999)
    backend = TensorRTBackend.build(model, (112, 112), TASKS, 'cpu', 'fp16', folder,
                                    backends.checkpoint_ids(TASKS, ROLES), logs.append,
                                    gate=gate,
                                    toolchain=_fake_toolchain(strong=False, builds=builds))
    # The set fails; each engine alone (PyTorch for the rest) fails too: all three fall back.
    assert gated == ['fp16'] * 4 + ['fp16-safe'] and backend.precision == 'fp16-safe'
    warning = next(line for line in logs if line.startswith('WARNING'))
    assert 'segmentation argmax agreement 41.00% < 99%' in warning
    assert 'falling back to fp16-safe' in warning and 'not used' in warning
    # Weakly typed: built from the fp32 graphs, with the fp32 layers pinned by name.
    assert [b[1] for b in builds] == ['fp16'] * 3 + ['fp16-safe'] * 3
    assert all(b[0] == parts[i % 3].path.name and b[2] > 0 for i, b in enumerate(builds))
    with pytest.raises(BackendError, match=r'no TensorRT engine passed.*fp16:.*fp32:'):
        TensorRTBackend.build(model, (112, 112), TASKS, 'cpu', 'fp16', folder,
                              backends.checkpoint_ids(TASKS, ROLES), logs.append,
                              toolchain=_fake_toolchain(builds=builds),
                              gate=lambda b: parity.ParityReport(normals=float('nan')))
    with pytest.raises(BackendError, match='bf16'):
        TensorRTBackend.build(model, (112, 112), ['depth'], 'cpu', 'bf16', folder,
                              toolchain=_fake_toolchain(builds=builds))


def test_only_the_part_failing_the_gate_falls_back(model, exported_for_tensorrt):
    """A broken fp16 depth engine: the gate blames it alone; encoder and normals stay fp16."""
    from tipsv2_ros.runtime.backends.tensorrt.backend import TensorRTBackend
    folder, _ = exported_for_tensorrt
    builds, logs = [], []
    backend = TensorRTBackend.build(
        model, (112, 112), TASKS, 'cpu', 'fp16', folder, backends.checkpoint_ids(TASKS, ROLES),
        logs.append, toolchain=_fake_toolchain(builds=builds, version='10.98-fake',
                                               broken={('depth', 'fp16')}))
    assert [b[:2] for b in builds] == [('encoder-fp16.onnx', 'fp16'), ('depth-fp16.onnx', 'fp16'),
                                       ('normals-fp16.onnx', 'fp16'),
                                       ('depth-fp16-safe.onnx', 'fp16-safe')]
    assert backend.precision == 'encoder fp16, depth fp16-safe, normals fp16'
    assert backend.report.passed() and 'fp16-safe' in backend.files['depth'].name
    verdicts = [line for line in logs if line.startswith('  gate with only the fp16')]
    assert len(verdicts) == 3 and 'depth relative error' in verdicts[1]
    assert verdicts[0].endswith('passes') and verdicts[2].endswith('passes')
    warning = next(line for line in logs if line.startswith('WARNING'))
    assert 'rebuilding the depth part(s), falling back to fp16-safe' in warning
    # A context that cannot get GPU memory is not "fixed" by a rebuild: the error goes up.
    from tipsv2_ros.runtime.backends.tensorrt.backend import Toolchain
    from tipsv2_ros.runtime.backends.tensorrt.engine import EngineMemoryError

    def no_memory(blob, device):
        raise EngineMemoryError('TensorRT could not create an execution context')
    fake = _fake_toolchain(builds=builds, version='10.98-fake')
    builds.clear()
    with pytest.raises(EngineMemoryError):
        TensorRTBackend.build(model, (112, 112), TASKS, 'cpu', 'fp16', folder,
                              backends.checkpoint_ids(TASKS, ROLES), logs.append,
                              toolchain=Toolchain(*fake[:4], no_memory))
    assert builds == []  # the cached engines were found; nothing was rebuilt


def test_mixed_precision_graph_keeps_sensitive_ops_in_fp32(exported_for_tensorrt):
    from tipsv2_ros.runtime.export import precision as onnx_precision
    _, parts = exported_for_tensorrt
    source = onnx.load(str(parts['normals'].path))
    kinds = onnx_precision.compute_types(source, 'fp16')
    by_name = {n.name: n for n in source.graph.node}
    assert {by_name[n].op_type for n, k in kinds.items() if k == 'reduced'} >= {'Conv', 'MatMul'}
    assert all(kinds[n.name] == 'fp32' for n in source.graph.node
               if n.op_type in ('ReduceL2', 'Div'))  # the final normalisation
    encoder = onnx.load(str(parts['encoder'].path))
    pinned = onnx_precision.fp32_nodes(encoder, 'fp16')
    by_type = {}
    for node in encoder.graph.node:
        by_type.setdefault(node.op_type, set()).add(node.name)
    assert by_type['LayerNormalization'] <= pinned
    # Attention and GELU stay fp16 between their fp16 matmuls (fused attention needs one
    # type); only the fp16-safe fallback pins them.
    assert not (by_type['Softmax'] | by_type['Erf']) & pinned
    assert by_type['Softmax'] | by_type['Erf'] <= onnx_precision.fp32_nodes(encoder, 'fp16-safe')
    heads = onnx.load(str(parts['depth'].path))
    assert not {n.name for n in heads.graph.node if n.op_type in ('Pow', 'Tanh')} \
        & onnx_precision.fp32_nodes(heads, 'fp16')
    for name in ('encoder', 'normals'):
        for level in onnx_precision.PRECISIONS:
            mixed = onnx_precision.to_mixed_precision(onnx.load(str(parts[name].path)), level)
            types = {v.name: v.type.tensor_type.elem_type for v in mixed.graph.value_info}
            for node in mixed.graph.node:
                if node.op_type in onnx_precision.KEEP_FP32:
                    assert types.get(node.input[0], 1) == onnx.TensorProto.FLOAT, node.name
            assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
                       for o in list(mixed.graph.input) + list(mixed.graph.output))
            assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in mixed.graph.initializer)
            session = onnxruntime.InferenceSession(mixed.SerializeToString(),
                                                   providers=['CPUExecutionProvider'])
            assert session.get_outputs()[0].type == 'tensor(float)'
    with pytest.raises(ValueError, match='precision'):
        onnx_precision.compute_types(encoder, 'int8')


def test_depth_expectation_stays_fp32_in_every_mixed_level(exported_for_tensorrt):
    """The depth head's weights @ [centers, 1] sums hundreds of terms: fp16 would overflow."""
    from tipsv2_ros.runtime.export import precision as onnx_precision
    _, parts = exported_for_tensorrt
    source = onnx.load(str(parts['depth'].path))
    sums = onnx_precision.expectations(source.graph)
    assert len(sums) == 1
    expectation = next(n for n in source.graph.node if n.name in sums)
    bins = next(i for i in source.graph.initializer if i.name == expectation.input[1])
    assert list(bins.dims) == [golden.load_model().config.dpt.depth_bins, 2]
    producers = {o: n for n in source.graph.node for o in n.output}
    relu_shift = producers[expectation.input[0]]  # relu(logits) + min_depth
    for level in onnx_precision.PRECISIONS:
        kinds = onnx_precision.compute_types(source, level)
        assert kinds[expectation.name] == 'fp32', level
        assert kinds[relu_shift.name] == 'fp32', level  # after the last projection
        assert any(kinds[n.name] == 'reduced' for n in source.graph.node
                   if n.op_type == 'Conv'), level
        mixed = onnx_precision.to_mixed_precision(onnx.load(str(parts['depth'].path)), level)
        types = {v.name: v.type.tensor_type.elem_type for v in mixed.graph.value_info}
        types.update({i.name: i.data_type for i in mixed.graph.initializer})
        node = next(n for n in mixed.graph.node if n.name == expectation.name)
        assert [types[i] for i in node.input] == [onnx.TensorProto.FLOAT] * 2, level
        assert types[node.output[0]] == onnx.TensorProto.FLOAT, level
    # The normals head has no expectation: its last projection stays fp16.
    assert not onnx_precision.expectations(onnx.load(str(parts['normals'].path)).graph)


def test_tampered_or_foreign_engines_are_rebuilt_never_loaded(model, exported_for_tensorrt,
                                                              tmp_path):
    """A replaced engine (same size, other bytes) or one of another owner is not deserialized."""
    import os
    import shutil

    from tipsv2_ros.runtime.backends.tensorrt.backend import TensorRTBackend
    folder = tmp_path / 'cache'
    shutil.copytree(exported_for_tensorrt[0], folder)
    loaded = []
    builds = []

    def build(logs):
        toolchain = _fake_toolchain(builds=builds)
        original = toolchain.load
        toolchain = toolchain._replace(load=lambda blob, device: loaded.append(blob) or
                                       original(blob, device))
        return TensorRTBackend.build(model, (112, 112), ['depth'], 'cpu', 'fp32', folder,
                                     backends.checkpoint_ids(TASKS, ROLES), logs.append,
                                     toolchain=toolchain)
    engine = build([]).files['depth']
    good = engine.read_bytes()
    evil = bytearray(good)
    evil[len(evil) // 2] ^= 0xFF  # same size: only the hash can tell
    engine.write_bytes(bytes(evil))
    builds.clear()
    loaded.clear()
    logs = []
    build(logs)
    warnings = [line for line in logs if line.startswith('WARNING')]
    assert len(warnings) == 1 and 'corrupt (SHA-256 mismatch); rebuilding' in warnings[0], logs
    assert len(builds) == 1 and 'depth' in builds[0][0] and bytes(evil) not in loaded
    assert engine.read_bytes() == good
    if os.geteuid() == 0:  # a file of another user: rebuilt, even with the right hash
        os.chown(engine, 4321, 4321)
        builds.clear()
        logs = []
        build(logs)
        warnings = [line for line in logs if line.startswith('WARNING')]
        assert len(warnings) == 1 and 'belongs to uid 4321' in warnings[0], logs
        assert len(builds) == 1 and engine.stat().st_uid == os.getuid()
    folder.chmod(0o777)
    with pytest.raises(BackendError, match=f'writable by others .*chmod 700 {folder}'):
        build([])
