# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""``precision: int8`` for the onnxruntime backend: build, cache, gate, fall back.

The int8 files are made from the exported fp32 parts (``onnx_int8.quantize``) and cached
next to them with a sidecar like every exported graph. Before they serve a frame, the int8
path is compared with the fp32 PyTorch path on the same frames (the bundled sample rooms,
or ``int8.calibration_frames``): depth median relative error, normals mean angle and
zero-shot label agreement against ``parity.Int8Thresholds``. The figures are cached with
the files they judge, so a restart neither quantises nor measures again. A path that
fails falls back to the fp32 graphs with one warning that names the figures; output of a
failed int8 graph is never served.
"""
import json
import logging
import pathlib
import shutil
import tempfile
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
import torch

from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime import export
from tipsv2_ros.runtime.backends.base import BackendError, check_tasks
from tipsv2_ros.runtime.export import cache, parity

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')


def gate_frames(input_size: Tuple[int, int], folder: Optional[str] = None) -> torch.Tensor:
    """Return the frames of the gate and the calibration: (N, 3, H, W) in [0, 1].

    Args:
        input_size: (H, W) of the model input.
        folder: a folder of the robot's own images (png/jpg); default the sample rooms.
    """
    if not folder:
        return export.sample_pixels(input_size, 6)
    from PIL import Image

    from tipsv2_ros.runtime.frame import processing
    files = sorted(p for p in pathlib.Path(folder).iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES) if pathlib.Path(folder).is_dir() else []
    if not files:
        raise BackendError(f'int8.calibration_frames: no .png/.jpg images in {folder!r}')
    frames = [np.asarray(Image.open(f).convert('RGB')) for f in files[:16]]
    return processing.to_pixel_values_batch(frames, tuple(input_size), 'cpu')


def _digest(pixels: torch.Tensor) -> str:
    return cache.digest({'frames': cache.tensors_id(torch.nn.ParameterList(
        [torch.nn.Parameter(pixels.contiguous(), requires_grad=False)]))})


def quantized_parts(model: TipsV2, parts: Mapping[str, export.ExportedPart],
                    pixels: torch.Tensor, folder: pathlib.Path,
                    log: Callable[[str], None]) -> Dict[str, pathlib.Path]:
    """Quantise (or reuse from the cache) every part; the heads calibrate on ``pixels``."""
    from tipsv2_ros.runtime.export import int8 as onnx_int8
    calibration = pixels[0::2]  # half of the frames; the gate sees all of them
    feeds = None
    files = {}
    for name, part in parts.items():
        old = part.record['key']
        key = {'format': 1, 'kind': 'onnx-int8', 'part': name, 'variant': old['variant'],
               'checkpoint': old['checkpoint'], 'config': old['config'],
               'input_size': old['input_size'], 'outputs': old['outputs'],
               'onnx': part.record['files'][part.path.name]['sha256'],
               'onnxruntime': onnx_int8.version(), 'recipe': onnx_int8.recipe(),
               'frames': _digest(calibration) if name != 'encoder' else None}
        target = folder / export.file_name({**key, 'part': f'{name}-int8'}, '.onnx')
        with cache.locked(target):
            if cache.load(target, key, log, f'ONNX int8 {name}') is None:
                if name != 'encoder' and feeds is None:
                    feeds = _head_feeds(model, parts['encoder'], calibration)
                _quantize(part, target, key, feeds if name != 'encoder' else None, log)
        files[name] = target
    return files


def _head_feeds(model: TipsV2, encoder: export.ExportedPart, pixels: torch.Tensor):
    """Return the heads' calibration inputs: the fp32 encoder's outputs on each frame."""
    names = [n for n in encoder.spec.outputs if n != 'features']
    path = model.image_path(['depth'], tuple(pixels.shape[-2:])).eval()
    module = export.part_modules(path)['encoder'][0]
    with torch.inference_mode():
        outputs = [module(frame[None].to(model.device)) for frame in pixels]
    return [{n: t.float().cpu().numpy() for n, t in zip(names, flat)} for flat in outputs]


def _quantize(part: export.ExportedPart, target: pathlib.Path, key: dict, feeds,
              log: Callable[[str], None]) -> None:
    from tipsv2_ros.runtime.export import int8 as onnx_int8
    log(f'quantising the {part.spec.name} to int8 (once) ...')
    scratch = pathlib.Path(tempfile.mkdtemp(prefix='.int8-', dir=target.parent))
    try:
        built = scratch / target.name
        how = onnx_int8.quantize(part.path, built, feeds)
        files = {f.name: f for f in scratch.iterdir() if f.is_file()}  # + external data
        cache.store(target, files, key, {'method': how})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f'quantised the {part.spec.name} ({how}); cached as {target}')


def measure(backend, model: TipsV2, pixels: torch.Tensor) -> parity.Int8Report:
    """Compare ``backend`` with PyTorch fp32 on ``pixels``, one frame at a time."""
    return parity.compare_int8(*parity.side_by_side(backend, model, pixels))


def build(model: TipsV2, tasks: Iterable[str], input_size: Tuple[int, int], device,
          parts: Mapping[str, export.ExportedPart], create: Callable[..., object],
          cache_dir=None, log: Callable[[str], None] = logger.info,
          frames_folder: Optional[str] = None,
          thresholds: parity.Int8Thresholds = parity.Int8Thresholds()):
    """Return the gated int8 onnxruntime backend, or the fp32 one when the gate fails.

    Args:
        model: the loaded model (the fp32 reference of the gate).
        tasks: the tasks the backend may run.
        input_size: (H, W).
        device: the CPU.
        parts: the exported fp32 parts.
        create: ``(files, precision, report) -> backend`` (an ``OnnxRuntimeBackend``).
        cache_dir: where the files and the gate figures go (default: the engine cache).
        log: progress, cache and fallback messages.
        frames_folder: the robot's own frames for calibration and the gate.
        thresholds: the gate.
    """
    tasks, folder = check_tasks(tasks), pathlib.Path(cache_dir or cache.default_dir())
    pixels = gate_frames(input_size, frames_folder)
    files = quantized_parts(model, parts, pixels, folder, log)
    backend = create(files, 'int8', None)
    key = {'format': 1, 'kind': 'int8-gate', 'tasks': sorted(tasks),
           'files': {n: cache.sha256_file(p) for n, p in sorted(files.items())},
           'frames': _digest(pixels), 'reference': f'torch {torch.__version__}'}
    target = folder / export.file_name({**key, 'variant': parts['encoder'].record['key'][
        'variant'], 'input_size': list(input_size), 'part': 'int8-gate'}, '.json')
    with cache.locked(target):
        record = cache.load(target, key, log, 'int8 gate')
        if record is None:
            log(f'int8 accuracy gate: {len(pixels)} frames through the int8 and the fp32 '
                'path ...')
            report = measure(backend, model, pixels)
            scratch = pathlib.Path(tempfile.mkdtemp(prefix='.gate-', dir=folder))
            try:
                (scratch / target.name).write_text(json.dumps(report._asdict()) + '\n')
                record = cache.store(target, {target.name: scratch / target.name}, key)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    report = parity.Int8Report(**json.loads(target.read_text()))
    problems = report.failures(thresholds)
    if not problems:
        log(f'onnxruntime int8 passes the accuracy gate against fp32: {report.describe()}')
        backend.report = report
        return backend
    backend.close()
    log(f'WARNING: the onnxruntime int8 graphs fail the accuracy gate against fp32 '
        f'({"; ".join(problems)}; {report.describe()}); falling back to fp32. Their output '
        'is not used.')
    fallback = create({n: p.path for n, p in parts.items()}, 'fp32', report)
    fallback.rejected_int8 = files  # for `tipsv2 bench`, which times them all the same
    return fallback
