# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Building TensorRT engines from the exported ONNX parts (TensorRT 10.x and 11.x).

TensorRT is imported inside the functions, so this module imports without it. Two ways to
get fp16, chosen by version:

- strongly typed networks (TensorRT >= 10.12, where the weak-typing API is deprecated, and
  11.x, where it is gone): the graph carries its types (``onnx_precision.write_mixed``), the
  builder adds none;
- weakly typed networks (TensorRT 10.0-10.11): the fp32 graph, the FP16 builder flag, and the
  layers that must stay fp32 pinned with OBEY_PRECISION_CONSTRAINTS; layers are matched to
  ONNX nodes through the ``[ONNX Layer: name]`` metadata the ONNX parser records.

Builds report progress (start, phases, steps every few seconds, end) through ``log``, are
limited to a workspace (``BuildSettings.workspace_mb``; TensorRT's default is all device
memory, which on a Jetson is the robot's whole RAM) and reuse a timing cache (kernel timings
of one TensorRT version on one GPU model): the second part and every later build skip most
of the kernel timing. Engines record detailed layer information for the engine inspector
(``tensorrt_inspect``).
"""
import logging
import os
import re
import threading
import time
from typing import Callable, Collection, NamedTuple, Optional, Set, Tuple

from tipsv2_ros.runtime.backends.base import BackendError

logger = logging.getLogger(__name__)

INSTALL_HINT = ('x86_64: scripts/setup.sh --tensorrt (TensorRT from the NVIDIA index, '
                'matching TIPSV2_TORCH=cu12x); Jetson: JetPack >= 6.1 (apt TensorRT 10) and '
                'TIPSV2_JETSON=1 scripts/setup.sh; see README "GPU install"; or use backend '
                'onnxruntime or torch')
MIN_VERSION = (10, 0)
_LOGGER = None
_PROGRESS_EVERY_S = 10.0


class BuildSettings(NamedTuple):
    """Builder limits shared by the parts of one backend."""

    workspace_mb: int = 4096  # the builder's scratch memory (tactics needing more are skipped)
    timing_cache: Optional[str] = None  # file of kernel timings, read and updated


def check_version(version: str) -> None:
    """Refuse TensorRT before 10 (JetPack 5 and 6.0 ship 8.x): its API and parser differ."""
    if version_tuple(version) < MIN_VERSION:
        raise BackendError(
            f'TensorRT {version} is too old: tipsv2_ros needs TensorRT >= 10.0 (the 8.x '
            'releases of JetPack 5 and 6.0 lack the APIs and ONNX ops the engines use). '
            'Upgrade to JetPack >= 6.1, or on x86_64 run scripts/setup.sh --tensorrt')


def import_tensorrt():
    """Return the tensorrt module (>= 10), or raise a BackendError that says how to install it."""
    try:
        import tensorrt
    except ImportError as error:
        raise BackendError(f'TensorRT is not installed ({error}): {INSTALL_HINT}') from None
    check_version(getattr(tensorrt, '__version__', '0'))
    return tensorrt


def version_tuple(version: str) -> Tuple[int, int]:
    """'10.13.3.9' -> (10, 13)."""
    numbers = re.findall(r'\d+', version)
    return (int(numbers[0]), int(numbers[1])) if len(numbers) > 1 else (int(numbers[0]), 0)


def strongly_typed(version: str, has_fp16_flag: bool = True) -> bool:
    """Whether to build strongly typed: TensorRT >= 10.12, or no FP16 builder flag (11.x)."""
    return version_tuple(version) >= (10, 12) or not has_fp16_flag


def onnx_nodes(metadata: str) -> Set[str]:
    """Return the ONNX node names in a layer's metadata ('[ONNX Layer: a]<US>[ONNX Layer: b]')."""
    return set(re.findall(r'\[ONNX Layer: ([^\]]+)\]', metadata or ''))


def trt_logger():
    """Return the process-wide TensorRT logger (forwards to Python logging; outlives engines)."""
    global _LOGGER
    if _LOGGER is None:
        trt = import_tensorrt()

        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors = []

            def log(self, severity, msg):
                level = int(severity)  # 0 internal error, 1 error, 2 warning, 3 info
                if level <= 1:
                    self.errors = (self.errors + [msg])[-20:]
                    logger.error('TensorRT: %s', msg)
                elif level == 2:
                    logger.warning('TensorRT: %s', msg)

        _LOGGER = Logger()
    return _LOGGER


def _progress_monitor(trt, log: Callable[[str], None]):
    """Return an IProgressMonitor logging top-level phases and, every few seconds, a step."""

    class Progress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()  # TensorRT calls it from several threads
            self._phases = {}
            self._last = time.monotonic()

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                self._phases[phase_name] = (parent_phase, num_steps, time.monotonic())
                if parent_phase is None:
                    log(f'  TensorRT: {phase_name} ({num_steps} steps)')

        def step_complete(self, phase_name, step):
            with self._lock:
                now = time.monotonic()
                if now - self._last >= _PROGRESS_EVERY_S:
                    self._last = now
                    total = self._phases.get(phase_name, (None, '?'))[1]
                    log(f'  TensorRT: {phase_name}: step {step + 1} of {total}')
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            with self._lock:
                parent, _, start = self._phases.pop(phase_name, (None, 0, time.monotonic()))
                if parent is None:
                    log(f'  TensorRT: {phase_name} done ({time.monotonic() - start:.0f} s)')

    return Progress()


def pin_fp32(trt, network, names: Collection[str]) -> int:
    """Pin the layers made from the ONNX nodes ``names`` to fp32; return how many."""
    names, pinned = set(names), 0
    floating = (trt.float32, trt.float16)
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        nodes = onnx_nodes(getattr(layer, 'metadata', '')) or {layer.name}
        if not nodes & names:
            continue
        outputs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floating]
        if not outputs:
            continue
        layer.precision = trt.float32
        for j in outputs:
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def build_engine(onnx_path: os.PathLike, precision: str, fp32_nodes: Collection[str],
                 max_batch: int, log: Callable[[str], None], strong: bool,
                 settings: BuildSettings = BuildSettings()) -> bytes:
    """Build a serialized engine for one part.

    Args:
        onnx_path: the part; for a strongly typed fp16 build, its mixed-precision variant.
        precision: 'fp16', 'fp16-safe' or 'fp32' (TF32 off: the last, safest fallback).
        fp32_nodes: ONNX nodes to pin to fp32 in a weakly typed fp16 build.
        max_batch: the largest batch of the optimisation profile (optimised for 1).
        log: progress messages.
        strong: build a strongly typed network.
        settings: the workspace limit and the timing cache file.

    Returns:
        The serialized engine.
    """
    trt = import_tensorrt()
    trt_log = trt_logger()
    builder = trt.Builder(trt_log)
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, 'STRONGLY_TYPED'):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_log)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f'TensorRT {trt.__version__} could not parse '
                           f'{os.path.basename(onnx_path)}: {errors}')
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        rest = tuple(tensor.shape)[1:]  # all fixed but the batch
        profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    if precision == 'fp32' and hasattr(trt.BuilderFlag, 'TF32'):
        config.clear_flag(trt.BuilderFlag.TF32)
    if not strong and precision != 'fp32':
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log(f'  TensorRT: {pin_fp32(trt, network, fp32_nodes)} layers pinned to fp32')
    if hasattr(config, 'progress_monitor'):  # TensorRT >= 10.0
        config.progress_monitor = _progress_monitor(trt, log)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_mb) << 20)
    # Layer names, precisions and tactics for the engine inspector (no runtime cost).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    timing = _load_timing_cache(config, settings.timing_cache, log)
    trt_log.errors = []
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f'TensorRT {trt.__version__} could not build an engine from '
                           f'{os.path.basename(onnx_path)}: {"; ".join(trt_log.errors[-3:])}')
    if timing is not None:
        _save_timing_cache(config, settings.timing_cache)
    return bytes(memoryview(serialized))


def _load_timing_cache(config, path: Optional[str], log: Callable[[str], None]):
    """Attach the timing cache at ``path`` (new if absent or unreadable) to ``config``."""
    if not path:
        return None
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        data = b''
    try:
        timing = config.create_timing_cache(data)
    except (RuntimeError, TypeError, ValueError):  # a truncated or foreign file
        timing = None
    if timing is None or not config.set_timing_cache(timing, False):
        log(f'  TensorRT: the timing cache {os.path.basename(path)} does not fit this '
            'TensorRT/GPU; starting a new one')
        timing = config.create_timing_cache(b'')
        config.set_timing_cache(timing, False)
    elif data:
        log(f'  TensorRT: reusing the timing cache {os.path.basename(path)}')
    return timing


def _save_timing_cache(config, path: str) -> None:
    """Write the (grown) timing cache atomically; a failure costs only time later."""
    data = config.get_timing_cache().serialize()
    temporary = f'{path}.{os.getpid()}.tmp'
    try:
        with open(temporary, 'wb') as f:
            f.write(memoryview(data))
        os.replace(temporary, path)
    except OSError as error:
        logger.warning('could not write the TensorRT timing cache %s: %s', path, error)
