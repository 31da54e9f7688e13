# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The TensorRT backend: cached, parity-gated engines for the parts of the image path.

``TensorRTBackend.build`` exports the parts to ONNX (``runtime.export``), builds one engine
per part (or loads it from the cache, ``store``), and accepts the engines only after a
parity gate against PyTorch fp32 on the sample frames (``gate``): depth relative
error < 1%, normals median angular error < 2 degrees, zero-shot argmax agreement >= 99% for
the scene's labels. FP16 ViT engines are known to break on some TensorRT versions (e.g. 10.3
on JetPack 6), so a failing fp16 engine is replaced by a safer one (fp16 with only matmuls
and convolutions in fp16, then fp32 without TF32), with a warning; only the parts that fail
on their own are rebuilt; output from an engine that failed the gate is never served.

The engines run on the backend's own CUDA stream, ordered after the caller's stream by an
event and before the caller's next work by another (no device-wide synchronisation, so a
label change computing text embeddings on another stream never stalls a frame), and share
one block of activation memory (they run one after another).
"""
import logging
import pathlib
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, NamedTuple, Optional, Tuple

import torch

from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime import export
from tipsv2_ros.runtime.backends.base import Backend, BackendError, check_tasks, Feeds
from tipsv2_ros.runtime.backends.tensorrt import cuda_buffers, gate as engine_gate
from tipsv2_ros.runtime.backends.tensorrt import store as engine_store
from tipsv2_ros.runtime.backends.tensorrt.gate import measure
from tipsv2_ros.runtime.export import cache, parity

logger = logging.getLogger(__name__)

FALLBACKS = {'fp16': ('fp16', 'fp16-safe', 'fp32'), 'fp32': ('fp32',)}
LEVELS = {'fp16': 'fp16 (LayerNorm, reductions, the depth expectation and final '
                  'normalisations in fp32)',
          'fp16-safe': 'fp16-safe (only matmuls and convolutions in fp16)',
          'fp32': 'fp32 (TF32 off)'}
Runner = Callable[[Mapping[str, torch.Tensor]], Dict[str, torch.Tensor]]


class Toolchain(NamedTuple):
    """What builds and loads engines: TensorRT on a GPU, or a stand-in in CPU tests."""

    version: str  # recorded in the cache key and the file name
    gpu: str  # name, compute capability and SM count, in the cache key and the file name
    strongly_typed: bool
    build: Callable[..., bytes]  # (onnx_path, precision, fp32_nodes, max_batch, log, strong,
    #                               settings)
    load: Callable[[bytes, torch.device], Runner]
    settings: Any = None  # tensorrt_build.BuildSettings (workspace); None: its defaults


def tensorrt_toolchain(device: torch.device, workspace_mb: Optional[int] = None) -> Toolchain:
    """Return the real toolchain for a CUDA ``device`` (imports TensorRT, refuses < 10)."""
    from tipsv2_ros.runtime import jetson
    from tipsv2_ros.runtime.backends.tensorrt import build as tensorrt_build
    from tipsv2_ros.runtime.backends.tensorrt import engine as tensorrt_engine
    from tipsv2_ros.runtime.backends.tensorrt import files as engine_files
    trt = tensorrt_build.import_tensorrt()
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    gpu = engine_files.gpu_identity(props.name, props.major, props.minor,
                                    props.multi_processor_count)
    strong = tensorrt_build.strongly_typed(trt.__version__, hasattr(trt.BuilderFlag, 'FP16'))
    settings = tensorrt_build.BuildSettings(workspace_mb or jetson.default_workspace_mb())
    return Toolchain(trt.__version__, gpu, strong, tensorrt_build.build_engine,
                     tensorrt_engine.Engine, settings)


class TensorRTBackend(Backend):
    """Runs accepted engines; build it with ``TensorRTBackend.build``.

    Args:
        runners: part name -> engine (callable on named tensors).
        input_size: (H, W) the engines were built for.
        tasks: the tasks that may be asked for.
        device: the CUDA device.
        precision: the accepted level ('fp16', 'fp16-safe' or 'fp32'), or the level of each
            part when they differ ('encoder fp16, depth fp16-safe, normals fp16').
        max_batch: the engines' largest batch; larger batches run in chunks.
        report: the parity figures the engines were accepted with.
        version: the TensorRT version, for ``describe``.
        files: part name -> engine file, for reports.
    """

    name = 'tensorrt'

    def __init__(self, runners: Mapping[str, Runner], input_size: Tuple[int, int],
                 tasks: Iterable[str], device, precision: str, max_batch: int = 4,
                 report: Optional[parity.ParityReport] = None, version: str = '',
                 files: Optional[Mapping[str, pathlib.Path]] = None):
        super().__init__(input_size, torch.device(device), tasks)
        self.runners, self.files = dict(runners), dict(files or {})
        self.precision, self.max_batch = precision, max_batch
        self.report, self.version = report, version
        self.stream = self.activations = None
        if self.device.type == 'cuda':
            self.stream = torch.cuda.Stream(self.device)
            self.activations = cuda_buffers.SharedActivations(self.runners.values(),
                                                              self.device)
            if self.activations.buffer is not None:  # used on our stream, freed elsewhere
                self.activations.buffer.record_stream(self.stream)

    @classmethod
    def build(cls, model: TipsV2, input_size: Tuple[int, int], tasks: Iterable[str],
              device, precision: str = 'fp16', cache_dir=None,
              checkpoints: Optional[Mapping[str, str]] = None,
              log: Callable[[str], None] = logger.info, max_batch: int = 4,
              toolchain: Optional[Toolchain] = None,
              gate: Optional[Callable[['TensorRTBackend'], parity.ParityReport]] = None,
              thresholds: parity.Thresholds = parity.Thresholds(),
              workspace_mb: Optional[int] = None) -> 'TensorRTBackend':
        """Export, build or load, gate, and fall back part by part until the set passes.

        Args:
            model: the loaded model on ``device``.
            input_size: (H, W).
            tasks: the tasks to build engines for.
            device: the CUDA device.
            precision: 'fp16' (falls back to 'fp16-safe' then 'fp32') or 'fp32'.
            cache_dir: ONNX and engine cache (default: the weights cache's ``engines/``).
            checkpoints: part name -> an id of its weight file (``cache.checkpoint_id``).
            log: progress, cache and fallback messages.
            max_batch: the largest batch of the engines.
            toolchain: replaces TensorRT (tests).
            gate: replaces the parity measurement (tests).
            thresholds: the parity thresholds.
            workspace_mb: the builder's workspace limit (default: ``jetson``'s).
        """
        if precision not in FALLBACKS:
            raise BackendError(f'backend tensorrt: precision {precision!r} is not supported; '
                               'use fp16 (parity-checked, with fallback) or fp32')
        tasks, device = check_tasks(tasks), torch.device(device)
        toolchain = toolchain or tensorrt_toolchain(device, workspace_mb)
        folder = pathlib.Path(cache_dir) if cache_dir else cache.default_dir()
        parts = export.export_parts(model, tasks, input_size, checkpoints, folder, log)
        gate = gate or (lambda backend: measure(backend, model))
        order = FALLBACKS[precision]
        levels = {name: order[0] for name in parts}
        loaded: Dict[Tuple[str, str], Tuple[Runner, pathlib.Path]] = {}

        def make(runners, level_of):
            return cls(runners, input_size, tasks, device, _describe(level_of), max_batch,
                       version=toolchain.version)

        failed = []
        try:
            while True:
                for name, level in levels.items():
                    if (name, level) not in loaded:
                        loaded[name, level] = engine_store.load_or_build(
                            parts[name], level, toolchain, folder, max_batch, device, log)
                engines = {n: loaded[n, lv][0] for n, lv in levels.items()}
                backend = make(engines, levels)
                backend.files = {n: loaded[n, lv][1] for n, lv in levels.items()}
                report = gate(backend)
                problems = report.failures(thresholds)
                if not problems:
                    log(f'TensorRT {_describe(levels, LEVELS)} engines pass the parity gate '
                        f'against PyTorch fp32: {report.describe()}')
                    backend.report = report
                    _close_unused(loaded, levels)
                    return backend
                failed.append(f'{backend.precision}: {"; ".join(problems)}')
                movable = {n: engines[n] for n, lv in levels.items() if lv != order[-1]}
                if not movable:
                    raise BackendError('no TensorRT engine passed the parity gate ('
                                       + ' | '.join(failed) + '); use backend onnxruntime '
                                       'or torch')
                reference = engine_gate.torch_runners(model, tasks, input_size)
                blamed = engine_gate.blame(
                    movable, levels, reference,
                    lambda runners, level: gate(make(runners, {'': level})).failures(
                        thresholds), log)
                following = {n: order[order.index(levels[n]) + 1] for n in blamed}
                log(f'WARNING: the TensorRT {backend.precision} engines fail the parity gate '
                    f'({"; ".join(problems)}) with TensorRT {toolchain.version} on '
                    f'{toolchain.gpu}; rebuilding the {", ".join(blamed)} part(s), '
                    f'falling back to {_describe(following, LEVELS)}. Their output is not used.')
                levels.update(following)
        except BaseException:
            _close_unused(loaded, {})
            raise

    def run_tasks(self, pixel_values: torch.Tensor, tasks: FrozenSet[str]) -> DenseOutputs:
        if self.stream is None:
            return super().run_tasks(pixel_values, tasks)
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)  # the frame's upload and resize come first
        with torch.cuda.stream(self.stream):
            outputs = super().run_tasks(pixel_values, tasks)
        caller.wait_stream(self.stream)  # the caller's next work sees the outputs
        if pixel_values.is_cuda:  # read on our stream, freed on the caller's
            pixel_values.record_stream(self.stream)
        for tensor in outputs.values():  # allocated here, used and freed on the caller's
            tensor.record_stream(caller)
        return outputs

    def run_part(self, name: str, feeds: Feeds) -> Dict[str, torch.Tensor]:
        return self.runners[name](feeds)

    def describe(self) -> str:
        return f'{super().describe()} ({self.precision}, TensorRT {self.version})'

    def close(self) -> None:
        for runner in self.runners.values():
            getattr(runner, 'close', lambda: None)()
        self.runners, self.activations = {}, None


def _describe(levels: Mapping[str, str], names: Optional[Mapping[str, str]] = None) -> str:
    """'fp16' when every part has that level, else 'encoder fp16, depth fp16-safe'."""
    names = names or {level: level for level in FALLBACKS['fp16']}
    if len(set(levels.values())) == 1:
        return names[next(iter(levels.values()))]
    return ', '.join(f'{part} {names[level]}' for part, level in levels.items())


def _close_unused(loaded: Mapping, levels: Mapping[str, str]) -> None:
    """Release the engines of levels that were not accepted (TensorRT memory)."""
    for (name, level), (runner, _) in loaded.items():
        if levels.get(name) != level:
            getattr(runner, 'close', lambda: None)()
