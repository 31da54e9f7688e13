# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Runs the benchmark sections asked for and renders the one table.

Order: the in-process frame path, the DDS part (message stages, the node end to end, P3,
the P6 hiccup, P7), P0, P1/P2, P6 (label changes), the zero-shot modes (slide vs whole),
TLS on the Triton link, the GPU rows (P4, P5), then fps (by heads subscribed and by task
rates, on any device). The node runs before this process loads transformers, ONNX Runtime
sessions and bf16 kernels, so that its in-process reference for P3 runs in the same state
as the node.
"""
import dataclasses
import pathlib
from typing import Callable, FrozenSet, List, Optional, Tuple

import numpy as np
import torch

from tipsv2_ros.bench import fps, label_change, machine, sections, zero_shot_modes
from tipsv2_ros.bench.table import render, Row, SECTIONS, verdicts
from tipsv2_ros.model.zero_shot import TEMPLATES
from tipsv2_ros.runtime import backends, startup
from tipsv2_ros.runtime.config import RuntimeConfig
from tipsv2_ros.tasks import DENSE_HEAD, REGISTRY, ZERO_SHOT

ROWS = ('stages', 'e2e', 'P0', 'P1', 'P2', 'P3', 'P6', 'P7', 'slide', 'tls', 'P4', 'P5',
        'fps')
DDS_ROWS = frozenset({'e2e', 'P3', 'P6', 'P7'})
GPU_ROWS = frozenset({'P4', 'P5'})
SAMPLE = pathlib.Path(__file__).resolve().parents[1] / 'samples' / 'room_00.png'


@dataclasses.dataclass
class BenchConfig:
    """What to measure and how.

    Attributes:
        runtime: the runtime measured (``cli.options.runtime_config`` makes it); the node
            under test gets the same (``ros.params.parameter_values``).
        weights: how the weights are described in the title, e.g. 'random b14 weights'.
        only: the row groups of ROWS to run.
        threads: torch intra-op threads here and in the node process (default: torch's).
        frame_size: (height, width) of the camera frames sent.
    """

    runtime: RuntimeConfig
    weights: str
    iterations: int = 10
    warmup: int = 1
    only: FrozenSet[str] = frozenset(ROWS)
    threads: Optional[int] = None
    frame_size: Tuple[int, int] = (480, 640)
    start_timeout: float = 600.0


def sample_frame(size: Tuple[int, int]) -> np.ndarray:
    """Return the bundled sample room resized to (height, width): an rgb8 camera frame."""
    from PIL import Image
    image = Image.open(SAMPLE).convert('RGB').resize((size[1], size[0]), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(image))


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> Tuple[str, List[Row]]:
    """Measure and return (the markdown table, its rows)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    only, it, wu = cfg.only, cfg.iterations, cfg.warmup
    runtime = startup.build(cfg.runtime, log=log, keep_torch=True)  # eager runs beside it
    model, backend = runtime.model, runtime.backend
    device, size, tasks = backend.device, backend.input_size, backend.tasks
    facts = machine.describe(device)
    frame = sample_frame(cfg.frame_size)
    label_set = (runtime.labels.build(sections.LABELS, TEMPLATES)
                 if any(REGISTRY[t].kind == ZERO_SHOT for t in tasks) else None)
    rows: List[Row] = []
    result = None
    if 'stages' in only:
        log('frame path, per stage...')
        stage_rows, result = sections.frame_path(runtime, frame, label_set, tasks, it, wu)
        rows += stage_rows
        rows += sections.head_parts(model, size, device, it, wu)
    if only & (DDS_ROWS | {'stages'}):
        rows += _dds(cfg, runtime, frame, label_set, result, log)
    eager = backend
    if backend.name != 'torch' or getattr(backend, 'precision', 'fp32') != 'fp32':
        from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
        eager = TorchBackend(model, size, tasks, 'fp32')
    reference, why = None, ''
    if only & {'P0', 'P1', 'P2'}:
        reference, why = sections.transformers_or_reason(model, device)
    if 'P0' in only:
        log('P0: encoder vs matmul...')
        rows += sections.p0(model, size, device, it, wu, reference)
    if only & {'P1', 'P2'}:
        rows += _p1_p2(cfg, model, eager, size, device, tasks, label_set, runtime, log,
                       reference, why)
    if 'P6' in only:
        log('P6: label changes...')
        rows += label_change.p6_labels(model, size, device, it, wu)
    if 'slide' in only:
        log('zero-shot modes: whole vs sliding windows...')
        rows += zero_shot_modes.rows(cfg.runtime, runtime, frame, label_set, it, wu, log)
    if 'tls' in only:
        from tipsv2_ros.bench import tls
        log('TLS: mutual TLS vs plain gRPC to the development Triton server...')
        rows += tls.rows(cfg, model, size, tasks, device, log)
    if only & GPU_ROWS:
        rows += _gpu(cfg, model, eager, runtime, frame, label_set, log)
    if 'fps' in only:
        log('fps by heads subscribed and by task rates...')
        rows += fps.heads_rows(runtime, frame, label_set, it, wu)
        rows += fps.rate_rows(runtime, frame, label_set, it, wu)
    facts['load average at end'] = machine.load_average()
    h, w = size
    title = (f'tipsv2 bench: {model.config.name} ({cfg.weights}) at {h}x{w}, backend '
             f'{backend.describe()}, frames {cfg.frame_size[1]}x{cfg.frame_size[0]} rgb8')
    method = (f'{it} iterations after {wu} warm-up; p50/p90 of wall time; each ratio is the '
              'median of per-round ratios of things run in turn in the same rounds '
              '(bench/timing.py); ' + verdicts(rows))
    return render(title, facts, rows, method), rows


def _p1_p2(cfg, model, eager, size, device, tasks, label_set, runtime, log, reference,
           why) -> List[Row]:
    others, skipped = {}, {'transformers': why}
    if 'P2' in cfg.only:
        log('P2: exporting / loading the onnxruntime backend...')
        dense = frozenset(t for t in tasks if REGISTRY[t].kind == DENSE_HEAD)
        ort = sections.optional_backend(lambda: backends.create(
            'onnxruntime', model, size, dense, device, 'fp32', cfg.runtime.cache_dir, log,
            cfg.runtime),
            skipped, 'onnxruntime fp32')
        if ort is not None:
            others['onnxruntime fp32'] = ort
        log('P2 int8: quantising / loading the onnxruntime int8 path and its accuracy gate...')
        int8 = sections.optional_backend(lambda: backends.create(
            'onnxruntime', model, size, tasks, device, 'int8', cfg.runtime.cache_dir, log,
            cfg.runtime), skipped, 'onnxruntime int8')
        if int8 is not None:
            skipped['onnxruntime int8 note'] = sections.int8_gate_note(int8)
            if int8.precision != 'int8' and getattr(int8, 'rejected_int8', None):
                # The gate failed and the backend serves fp32: time the int8 graphs anyway,
                # so the row says what int8 would cost (it is a MISS all the same).
                from tipsv2_ros.runtime.backends.onnx_backend import OnnxRuntimeBackend
                int8 = OnnxRuntimeBackend(int8.rejected_int8, size, tasks, device,
                                          precision='int8, rejected by the gate',
                                          report=int8.report)
            others['onnxruntime int8'] = int8
        from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
        bf16 = sections.optional_backend(lambda: TorchBackend(model, size, tasks, 'bf16'),
                                         skipped, 'torch bf16')
        if bf16 is not None:
            others['torch bf16'] = bf16
            pixels = torch.rand(1, 3, *size, device=device)
            skipped['torch bf16 note'] = sections.low_precision_accuracy(
                eager, bf16, pixels, label_set, runtime.pipeline.temperature,
                runtime.pipeline.model_output_size)
    log('P1/P2: ours, transformers and the other backends in turn...')
    return sections.p1_p2(model, eager, others, size, device, cfg.iterations, cfg.warmup,
                          skipped, reference)


def _dds(cfg, runtime, frame, label_set, result, log) -> List[Row]:
    names = ['message to array', 'message creation', 'publish'] if 'stages' in cfg.only else []
    names += ['node end to end', 'P3', 'P6 hiccup', 'P7'] if cfg.only & DDS_ROWS else []
    try:
        from tipsv2_ros.bench.dds import e2e as bench_e2e
    except ImportError as error:  # no ROS 2 in this environment
        return [Row.skipped(SECTIONS[1], name, f'rclpy not importable ({error})')
                for name in names]
    tasks = runtime.backend.tasks
    from tipsv2_ros.ros.params import parameter_values
    params = parameter_values(cfg.runtime)
    params.update({'tasks': sorted(tasks), 'cameras': [''], 'publish_points': False})
    if label_set is not None:
        params['labels'] = list(label_set.names)
    threads = cfg.threads or torch.get_num_threads()
    kwargs = {'e2e_args': {
        'params': params, 'tasks': tasks, 'frame': frame, 'iterations': cfg.iterations,
        'warmup': cfg.warmup, 'start_timeout': cfg.start_timeout, 'threads': threads,
        'in_process': lambda: runtime.pipeline.run([frame], tasks, label_set), 'log': log}}
    if result is not None:
        from tipsv2_ros.ros.player import camera_info_from
        height, width = frame.shape[:2]
        info = camera_info_from({'width': width, 'height': height, 'fx': 0.8 * width,
                                 'fy': 0.8 * width, 'cx': (width - 1) / 2,
                                 'cy': (height - 1) / 2}, 'camera_optical_frame')
        kwargs['message_args'] = (result, frame, cfg.iterations * 10, cfg.warmup, info)
    wanted = set(cfg.only) if result is not None else set(cfg.only) - {'stages'}
    log('DDS: message stages and the node end to end...')
    try:
        return bench_e2e.run(frozenset(wanted), **kwargs)
    except RuntimeError as error:
        log(f'DDS part failed: {error}')
        lines = [line for line in str(error).splitlines() if line.strip()]
        why = lines[0] + (f' ({lines[-1].strip()[:160]})' if len(lines) > 1 else '')
        return [Row.skipped(SECTIONS[1], name, why) for name in names]


def _gpu(cfg, model, eager, runtime, frame, label_set, log) -> List[Row]:
    if eager.device.type != 'cuda':
        why = 'no CUDA device (run with --device cuda on a GPU machine)'
        return [Row.skipped(SECTIONS[2], name, why, target) for name, target in (
            ('P4: TensorRT fp16 / our eager fp32', '<= 0.33'),
            ('P5: encoder + heads / GPU FLOP lower bound', '<= 4'))]
    from tipsv2_ros.bench import gpu
    log('GPU rows: P4, P5...')
    return gpu.rows(cfg, model, eager, runtime, frame, label_set, log)
