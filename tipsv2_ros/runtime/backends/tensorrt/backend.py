# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The TensorRT backend: cached, parity-gated engines for the parts of the image path.

``TensorRTBackend.build`` exports the parts to ONNX (``runtime.export``), builds one engine per
part (or loads it from the cache), and accepts the engines only after a parity gate against
PyTorch fp32 on the sample frames: depth relative error < 1%, normals median angular error
< 2 degrees, zero-shot argmax agreement >= 99% for the scene's labels. FP16 ViT engines are
known to break on some TensorRT versions (e.g. 10.3 on JetPack 6), so a failing fp16 engine
is replaced by a safer one (fp16 with only matmuls and convolutions in fp16, then fp32
without TF32), with a warning; output from an engine that failed the gate is never served.
"""
import logging
import pathlib
import shutil
import tempfile
import time
from typing import Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple

import torch

from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime import export
from tipsv2_ros.runtime.backends.base import Backend, BackendError, check_tasks, Feeds
from tipsv2_ros.runtime.export import cache, parity
from tipsv2_ros.tasks import REGISTRY, ZERO_SHOT

logger = logging.getLogger(__name__)

FALLBACKS = {'fp16': ('fp16', 'fp16-safe', 'fp32'), 'fp32': ('fp32',)}
LEVELS = {'fp16': 'fp16 (LayerNorm, softmax, reductions and final normalisations in fp32)',
          'fp16-safe': 'fp16-safe (only matmuls and convolutions in fp16)',
          'fp32': 'fp32 (TF32 off)'}
# What the sample frames show (tipsv2_ros/samples): the labels of the segmentation gate.
SCENE_LABELS = ('floor', 'wall', 'door', 'picture', 'box', 'ball')
GATE_FRAMES = 6
Runner = Callable[[Mapping[str, torch.Tensor]], Dict[str, torch.Tensor]]


class Toolchain(NamedTuple):
    """What builds and loads engines: TensorRT on a GPU, or a stand-in in CPU tests."""

    version: str  # recorded in the cache key
    gpu: str  # name and compute capability, recorded in the cache key
    strongly_typed: bool
    build: Callable[..., bytes]  # (onnx_path, precision, fp32_nodes, max_batch, log, strong)
    load: Callable[[bytes, torch.device], Runner]


def tensorrt_toolchain(device: torch.device) -> Toolchain:
    """Return the real toolchain for a CUDA ``device`` (imports TensorRT)."""
    from tipsv2_ros.runtime.backends.tensorrt import build as tensorrt_build
    from tipsv2_ros.runtime.backends.tensorrt import engine as tensorrt_engine
    trt = tensorrt_build.import_tensorrt()
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    gpu = f'{torch.cuda.get_device_name(index)} (sm_{major}{minor})'
    strong = tensorrt_build.strongly_typed(trt.__version__, hasattr(trt.BuilderFlag, 'FP16'))
    return Toolchain(trt.__version__, gpu, strong, tensorrt_build.build_engine,
                     tensorrt_engine.Engine)


class TensorRTBackend(Backend):
    """Runs accepted engines; build it with ``TensorRTBackend.build``.

    Args:
        runners: part name -> engine (callable on named tensors).
        input_size: (H, W) the engines were built for.
        tasks: the tasks that may be asked for.
        device: the CUDA device.
        precision: the accepted level ('fp16', 'fp16-safe' or 'fp32').
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

    @classmethod
    def build(cls, model: TipsV2, input_size: Tuple[int, int], tasks: Iterable[str],
              device, precision: str = 'fp16', cache_dir=None,
              checkpoints: Optional[Mapping[str, str]] = None,
              log: Callable[[str], None] = logger.info, max_batch: int = 4,
              toolchain: Optional[Toolchain] = None,
              gate: Optional[Callable[['TensorRTBackend'], parity.ParityReport]] = None,
              thresholds: parity.Thresholds = parity.Thresholds()) -> 'TensorRTBackend':
        """Export, build or load, gate, and fall back until an engine set passes.

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
        """
        if precision not in FALLBACKS:
            raise BackendError(f'backend tensorrt: precision {precision!r} is not supported; '
                               'use fp16 (parity-checked, with fallback) or fp32')
        tasks, device = check_tasks(tasks), torch.device(device)
        toolchain = toolchain or tensorrt_toolchain(device)
        folder = pathlib.Path(cache_dir) if cache_dir else cache.default_dir()
        parts = export.export_parts(model, tasks, input_size, checkpoints, folder, log)
        gate = gate or (lambda backend: measure(backend, model))
        failed = []
        for level in FALLBACKS[precision]:
            engines = {name: _engine(part, level, toolchain, folder, max_batch, device, log)
                       for name, part in parts.items()}
            backend = cls({n: e[0] for n, e in engines.items()}, input_size, tasks, device,
                          level, max_batch, version=toolchain.version,
                          files={n: e[1] for n, e in engines.items()})
            report = gate(backend)
            problems = report.failures(thresholds)
            if not problems:
                log(f'TensorRT {LEVELS[level]} engines pass the parity gate against PyTorch '
                    f'fp32: {report.describe()}')
                backend.report = report
                return backend
            failed.append(f'{level}: {"; ".join(problems)}')
            backend.close()
            if level != FALLBACKS[precision][-1]:
                following = FALLBACKS[precision][FALLBACKS[precision].index(level) + 1]
                log(f'WARNING: the TensorRT {level} engines fail the parity gate '
                    f'({"; ".join(problems)}) with TensorRT {toolchain.version} on '
                    f'{toolchain.gpu}; falling back to {LEVELS[following]}. Their output is '
                    'not used.')
        raise BackendError('no TensorRT engine passed the parity gate ('
                           + ' | '.join(failed) + '); use backend onnxruntime or torch')

    def run_part(self, name: str, feeds: Feeds) -> Dict[str, torch.Tensor]:
        return self.runners[name](feeds)

    def describe(self) -> str:
        return f'{super().describe()} ({self.precision}, TensorRT {self.version})'

    def close(self) -> None:
        for runner in self.runners.values():
            getattr(runner, 'close', lambda: None)()
        self.runners = {}


def measure(backend: Backend, model: TipsV2, frames: int = GATE_FRAMES) -> parity.ParityReport:
    """Compare ``backend`` with PyTorch fp32 on the sample frames, one frame at a time."""
    from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
    pixels = export.sample_pixels(backend.input_size, frames, backend.device)
    reference = TorchBackend(model, backend.input_size, backend.tasks, 'fp32')
    with torch.inference_mode(), parity.strict_fp32():
        ours = [backend.infer(frame[None], backend.tasks) for frame in pixels]
        expected = [reference.infer(frame[None], backend.tasks) for frame in pixels]
        classifier = None
        zero_shot = any(REGISTRY[t].kind == ZERO_SHOT for t in backend.tasks)
        if zero_shot and model.text is not None and model.tokenizer:
            classifier = model.text_classifier(SCENE_LABELS)
        elif zero_shot:
            # No text tower: fixed random directions still test that the argmax survives.
            width = model.config.vision.embed_dim
            directions = torch.randn(16, width, generator=torch.Generator().manual_seed(0))
            classifier = torch.nn.functional.normalize(directions, dim=-1)
    joined = [DenseOutputs({name: torch.cat([run[name] for run in runs]) for name in runs[0]})
              for runs in (ours, expected)]
    return parity.compare(joined[0], joined[1], classifier)


def engine_key(part: export.ExportedPart, level: str, toolchain: Toolchain,
               max_batch: int) -> dict:
    """Return what an engine depends on; a mismatch means a rebuild (logged)."""
    key = part.record['key']
    onnx_file = part.record['files'][part.path.name]['sha256']
    return {'format': 1, 'kind': 'tensorrt', 'part': key['part'], 'variant': key['variant'],
            'checkpoint': key['checkpoint'], 'config': key['config'],
            'input_size': key['input_size'], 'outputs': key['outputs'], 'precision': level,
            'network': 'strongly typed' if toolchain.strongly_typed else 'weakly typed',
            'tensorrt': toolchain.version, 'gpu': toolchain.gpu, 'max_batch': max_batch,
            'onnx': onnx_file}


def _engine(part: export.ExportedPart, level: str, toolchain: Toolchain,
            folder: pathlib.Path, max_batch: int, device, log) -> Tuple[Runner, pathlib.Path]:
    key = engine_key(part, level, toolchain, max_batch)
    target = folder / export.file_name({**key, 'part': f'{key["part"]}-{level}'}, '.engine')
    with cache.locked(target):
        if cache.load(target, key, log, f'TensorRT {part.spec.name}') is not None:
            try:
                return toolchain.load(target.read_bytes(), device), target
            except BackendError as error:
                log(f'TensorRT {part.spec.name}: {target.name} does not load ({error}); '
                    'rebuilding')
        _build(part, level, toolchain, target, key, max_batch, log)
        return toolchain.load(target.read_bytes(), device), target


def _build(part, level, toolchain, target, key, max_batch, log) -> None:
    from tipsv2_ros.runtime.export import precision as onnx_precision
    h, w = key['input_size']
    log(f'building the TensorRT {level} engine of the {part.spec.name} ({key["variant"]}, '
        f'{h}x{w}, TensorRT {toolchain.version}, {key["network"]}, {toolchain.gpu}); this '
        'takes a few minutes (longer on a Jetson) and is cached ...')
    start = time.perf_counter()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix='.engine-', dir=target.parent))
    try:
        source, pinned = part.path, ()
        if level != 'fp32' and toolchain.strongly_typed:
            source = scratch / f'{part.spec.name}-{level}.onnx'
            onnx_precision.write_mixed(part.path, level, source)
        elif level != 'fp32':
            pinned = onnx_precision.fp32_nodes_of(part.path, level)
        blob = toolchain.build(source, level, pinned, max_batch, log, toolchain.strongly_typed)
        built = scratch / target.name
        built.write_bytes(blob)
        seconds = time.perf_counter() - start
        cache.store(target, {target.name: built}, key, {'build_seconds': round(seconds, 1)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f'built the {part.spec.name} engine in {seconds:.0f} s ({len(blob) / 1e6:.0f} MB); '
        f'cached as {target}')
