# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""ONNX export of the image path, split into parts, gated on parity and cached.

The parts keep heads lazy on every backend: ``encoder`` (pixels -> the four intermediate
(patches, cls) pairs the DPT heads read, plus the zero-shot ``features`` when segmentation is
enabled), ``depth`` and ``normals`` (intermediates -> map). Each part is exported with
``torch.onnx.export(dynamo=True)`` at a fixed input size and a dynamic batch, checked with
``onnx.checker``, and compared with PyTorch through onnxruntime on sample images: every
output within 1e-3 relative (``parity.max_relative_error``) or the file is not accepted.
Files are written under a temporary name and moved into the cache on success (``cache.py``).
"""
import contextlib
import copy
import logging
import pathlib
import shutil
import tempfile
import time
from typing import Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Sequence, Tuple
import warnings

import numpy as np
import torch
from torch import nn

from tipsv2_ros.model.image_path import ImagePath
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime import cache, parity
from tipsv2_ros.runtime.base import BackendError, check_tasks

logger = logging.getLogger(__name__)

OPSET = 18
PARTS = ('encoder', 'depth', 'normals')
MAX_BATCH = 64
SAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'samples'
# Parts above this size keep their weights in a side file (protobuf's 2 GB limit).
_EXTERNAL_DATA_BYTES = 1 << 30


class ExportError(BackendError):
    """An export failed or did not reproduce PyTorch; the message has the figures."""


class PartSpec(NamedTuple):
    """A part's graph signature; every tensor has a dynamic batch as its first axis."""

    name: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]


class ExportedPart(NamedTuple):
    """An accepted ONNX file and its sidecar record (key, hashes, parity figures)."""

    spec: PartSpec
    path: pathlib.Path
    record: dict


def intermediate_names(count: int) -> Tuple[str, ...]:
    """Name the intermediates as they travel between parts: patches_0, cls_0, ..."""
    return tuple(f'{kind}_{i}' for i in range(count) for kind in ('patches', 'cls'))


def parts_for(tasks: Iterable[str]) -> Tuple[str, ...]:
    """Return the parts a set of tasks needs, in ``PARTS`` order."""
    tasks = check_tasks(tasks)
    return ('encoder',) + tuple(part for part in PARTS[1:] if part in tasks)


class EncoderPart(nn.Module):
    """The encoder with flat outputs: intermediates interleaved, then the features."""

    def __init__(self, path: ImagePath) -> None:
        super().__init__()
        self.encoder = path.encoder

    def forward(self, pixel_values: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        encoded = self.encoder(pixel_values)
        flat = tuple(t for pair in encoded.intermediates for t in pair)
        return flat + ((encoded.features,) if encoded.features is not None else ())


class HeadPart(nn.Module):
    """A DPT head (and, for normals, its L2 normalisation) with flat inputs."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, patches_0, cls_0, patches_1, cls_1, patches_2, cls_2, patches_3,
                cls_3) -> torch.Tensor:
        flat = (patches_0, cls_0, patches_1, cls_1, patches_2, cls_2, patches_3, cls_3)
        return self.head(tuple(zip(flat[0::2], flat[1::2])))


def part_modules(path: ImagePath) -> Dict[str, Tuple[nn.Module, PartSpec]]:
    """Wrap the parts of an image path (the modules are shared, not copied)."""
    layers = len(path.encoder.layers)
    outputs = intermediate_names(layers) + (('features',) if path.encoder.with_features else ())
    parts = {'encoder': (EncoderPart(path).eval(),
                         PartSpec('encoder', ('pixel_values',), outputs))}
    for name in PARTS[1:]:
        head = getattr(path, name)
        if head is not None:
            parts[name] = (HeadPart(head).eval(),
                           PartSpec(name, intermediate_names(layers), (name,)))
    return parts


def sample_pixels(input_size: Sequence[int], count: int = 2, device='cpu') -> torch.Tensor:
    """Return the sample room frames resized to the input: (count, 3, H, W) in [0, 1]."""
    from PIL import Image

    from tipsv2_ros import processing
    files = sorted(SAMPLES.glob('room_*.png'))[:count]
    frames = [np.asarray(Image.open(f).convert('RGB')) for f in files]
    return processing.to_pixel_values_batch(frames, tuple(input_size), device)


def export_key(model: TipsV2, spec: PartSpec, input_size: Sequence[int], checkpoint: str,
               opset: int = OPSET) -> dict:
    """Return what an exported part depends on; any change means a new export."""
    import onnxscript
    return {'format': 1, 'kind': 'onnx', 'part': spec.name, 'checkpoint': checkpoint,
            'variant': model.config.name, 'config': cache.digest({'repr': repr(model.config)}),
            'input_size': list(input_size), 'inputs': list(spec.inputs),
            'outputs': list(spec.outputs), 'opset': opset, 'code': cache.code_id(),
            'torch': torch.__version__, 'onnxscript': onnxscript.__version__}


def file_name(key: dict, suffix: str) -> str:
    """Name a file readably; what changes across upgrades (versions) stays in the sidecar."""
    h, w = key['input_size']
    stable = {k: key[k] for k in ('part', 'checkpoint', 'config', 'outputs', 'opset')
              if k in key}
    return f'{key["variant"]}-{h}x{w}-{key["part"]}-{cache.digest(stable)}{suffix}'


def export_parts(model: TipsV2, tasks: Iterable[str], input_size: Sequence[int],
                 checkpoints: Optional[Mapping[str, str]] = None, cache_dir=None,
                 log: Callable[[str], None] = logger.info,
                 opset: int = OPSET) -> Dict[str, ExportedPart]:
    """Export (or reuse from the cache) the parts ``tasks`` need.

    Args:
        model: the loaded model.
        tasks: a subset of ('depth', 'normals', 'segmentation').
        input_size: (H, W), multiples of 14.
        checkpoints: part name -> an id of the weight file it is made from
            (``cache.checkpoint_id``); a part without one hashes its tensors.
        cache_dir: where files go (default ``cache.default_dir()``).
        log: progress and cache messages.
        opset: the ONNX opset (>= 18: LayerNormalization stays one node).

    Returns:
        part name -> the accepted file.
    """
    tasks, input_size = check_tasks(tasks), tuple(input_size)
    folder = cache.secure_folder(cache_dir or cache.default_dir())
    with torch.inference_mode(False), torch.no_grad():
        path = model.image_path(tasks, input_size).eval()
        parts, results, inputs = part_modules(path), {}, None
        for name in parts_for(tasks):
            module, spec = parts[name]
            checkpoint = (checkpoints or {}).get(name) or cache.tensors_id(module)
            key = export_key(model, spec, input_size, checkpoint, opset)
            target = folder / file_name(key, '.onnx')
            with cache.locked(target):
                record = cache.load(target, key, log, f'ONNX {name}')
                if record is None:
                    if inputs is None:
                        # Export from a CPU copy: the traced graph does not depend on the
                        # GPU's kernels, and the parity check runs onnxruntime on the CPU.
                        if model.device.type != 'cpu':
                            parts = part_modules(copy.deepcopy(path).cpu())
                        inputs = _part_inputs(parts, input_size)
                    record = _export(parts[name][0], spec, inputs[name], target, key, opset,
                                     log)
            results[name] = ExportedPart(spec, target, record)
    return results


def _part_inputs(parts, input_size) -> Dict[str, Tuple[torch.Tensor, ...]]:
    """Return example inputs of every part: two sample frames and the encoder's outputs."""
    pixels = sample_pixels(input_size, 2)
    encoded = parts['encoder'][0](pixels)
    layers = len(parts['encoder'][1].outputs) - ('features' in parts['encoder'][1].outputs)
    return {'encoder': (pixels,), 'depth': encoded[:layers], 'normals': encoded[:layers]}


def _export(module: nn.Module, spec: PartSpec, inputs: Tuple[torch.Tensor, ...],
            target: pathlib.Path, key: dict, opset: int,
            log: Callable[[str], None]) -> dict:
    import onnx

    h, w = key['input_size']
    slow = ' (once; tens of seconds for a B/14 encoder on a small CPU)' * (spec.name == 'encoder')
    log(f'exporting the {spec.name} of TIPSv2 {key["variant"]} at {h}x{w} to ONNX, opset '
        f'{opset}{slow} ...')
    start = time.perf_counter()
    batch = torch.export.Dim('batch', min=1, max=MAX_BATCH)
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    scratch = pathlib.Path(tempfile.mkdtemp(prefix='.export-', dir=target.parent))
    try:
        temporary = scratch / target.name  # same name: the external data reference holds
        with _quiet_exporter():
            torch.onnx.export(module, inputs, temporary, dynamo=True, opset_version=opset,
                              input_names=list(spec.inputs), output_names=list(spec.outputs),
                              dynamic_shapes=tuple({0: batch} for _ in inputs),
                              external_data=weight_bytes > _EXTERNAL_DATA_BYTES,
                              verbose=False)
        exported = time.perf_counter() - start
        onnx.checker.check_model(str(temporary))
        # One frame: half the time of the example batch, and it exercises the dynamic batch.
        errors = onnxruntime_errors(temporary, spec, module, tuple(t[:1] for t in inputs))
        worst = max(errors.values())
        if not worst <= parity.EXPORT_RTOL:
            details = ', '.join(f'{k} {v:.1e}' for k, v in errors.items())
            raise ExportError(f'the exported {spec.name} does not match PyTorch in '
                              f'onnxruntime (max relative error {details}; allowed '
                              f'{parity.EXPORT_RTOL:g}); the file was not kept')
        built = {f.name: f for f in scratch.iterdir()}
        record = cache.store(target, built, key, {'export_seconds': round(exported, 2),
                                                  'max_relative_error': errors})
    except ExportError:
        raise
    except Exception as error:  # the exporter raises many types; say which part failed
        raise ExportError(f'ONNX export of the {spec.name} failed: '
                          f'{type(error).__name__}: {error}') from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f'exported the {spec.name} in {exported:.1f} s (checked in '
        f'{time.perf_counter() - start - exported:.1f} s): onnxruntime vs PyTorch max relative '
        f'error {worst:.1e} <= {parity.EXPORT_RTOL:g}; cached as {target}')
    return record


def onnxruntime_errors(onnx_path, spec: PartSpec, module: nn.Module,
                       inputs: Tuple[torch.Tensor, ...]) -> Dict[str, float]:
    """Run a part in onnxruntime (CPU) and PyTorch; return each output's relative error."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(onnx_path), options,
                                           providers=['CPUExecutionProvider'])
    feeds = {name: t.detach().cpu().numpy() for name, t in zip(spec.inputs, inputs)}
    ours = session.run(list(spec.outputs), feeds)
    with torch.no_grad(), parity.strict_fp32():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return {name: parity.max_relative_error(torch.from_numpy(a), b)
            for name, a, b in zip(spec.outputs, ours, expected)}


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporter's warnings (missing torchvision ops, deprecations) out of the log."""
    exporter_log = logging.getLogger('torch.onnx')
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        exporter_log.setLevel(level)
