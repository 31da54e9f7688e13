# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The backends by name (``FACTORIES``), and ``create``: ``auto`` picks the fastest available.

A backend is a ``base.Backend`` subclass in its own module plus a factory registered here
(``register``): the factory checks what the backend needs (packages, device, precision) and
builds it from the model and the ``RuntimeConfig``; the node's ``backend`` parameter and the
CLI's ``--backend`` accept every registered name.

``auto`` tries, in order: TensorRT on a CUDA device where it is installed; ONNX Runtime where
it can serve the device and the export succeeds (the first start exports the image path and
caches it); PyTorch. A backend asked for by name either starts or raises a BackendError that
says what to install or change.
"""
import importlib.util
import os
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime.backends.base import Backend, BackendError, check_tasks
from tipsv2_ros.runtime.config import RuntimeConfig
from tipsv2_ros.tasks import REGISTRY

# (model, input_size, tasks, device, precision, cache_dir, log, config) -> Backend
Factory = Callable[..., Backend]
PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16', 'int8')
_EXPORT_MODULES = ('onnx', 'onnxscript')


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda_onnxruntime() -> bool:
    from tipsv2_ros.runtime.backends.onnx_backend import has_cuda
    return has_cuda()


def candidates(device: torch.device) -> List[str]:
    """Return the backends ``auto`` tries on ``device``, fastest first (torch last)."""
    device = torch.device(device)
    exportable = all(_installed(m) for m in _EXPORT_MODULES)
    found = []
    if device.type == 'cuda' and _installed('tensorrt') and exportable:
        found.append('tensorrt')
    # On the CPU, ONNX Runtime runs the B/14 image path no faster than PyTorch eager (2.33 s
    # vs 2.30 s at 448, 2 threads) yet costs a ~25 s export on first start: auto keeps it
    # for CUDA machines without TensorRT; `backend: onnxruntime` still selects it anywhere.
    if _installed('onnxruntime') and exportable and device.type == 'cuda' \
            and _cuda_onnxruntime():
        found.append('onnxruntime')
    return found + ['torch']


def choose(name: str, device: torch.device) -> str:
    """Resolve 'auto' to the first candidate; other names pass through."""
    return candidates(device)[0] if name == 'auto' else name


def resolve_precision(precision: str, backend: str, device: torch.device) -> str:
    """'auto' is fp16 for TensorRT engines (parity-gated) and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise BackendError(f'precision {precision!r}: expected one of {", ".join(PRECISIONS)}')
    if precision != 'auto':
        return precision
    return 'fp16' if backend == 'tensorrt' else 'fp32'


def names() -> Tuple[str, ...]:
    """Every name ``create`` accepts: 'auto', then the registered backends."""
    return ('auto',) + tuple(FACTORIES)


def register(name: str, factory: Factory) -> None:
    """Make ``create(name, ...)`` build a backend with ``factory``."""
    FACTORIES[name] = factory


def create(name: str, model: TipsV2, input_size: Tuple[int, int], tasks: Iterable[str],
           device: torch.device, precision: str = 'auto', cache_dir: Optional[str] = None,
           log: Callable[[str], None] = print,
           config: Optional[RuntimeConfig] = None) -> Backend:
    """Create the backend ``name`` (one of ``names()``) for ``model``; raise BackendError.

    Args:
        name: a backend name, or 'auto'.
        model: the loaded model, on ``device``.
        input_size: (H, W) the image path runs at.
        tasks: the tasks that may be asked for.
        device: where frames arrive and outputs stay.
        precision: 'auto', 'fp32', 'fp16', 'bf16' or 'int8' (onnxruntime on the CPU).
        cache_dir: where ONNX files and engines are cached (default: the weights cache).
        log: where progress and the choice are reported.
        config: the rest of the runtime configuration: the weight files (resolved, by role;
            they key the export cache) and the tensorrt and triton settings.
    """
    if name not in names():
        raise BackendError(f'backend {name!r}: expected one of {", ".join(names())}')
    device, tasks = torch.device(device), check_tasks(tasks)
    config = config or RuntimeConfig(tasks=tuple(tasks))
    limited = [t for t in REGISTRY.ordered(tasks) if REGISTRY[t].backends]
    if limited:
        # A task whose head is not exported names the backends that run it.
        able = set.intersection(*(set(REGISTRY[t].backends) for t in limited))
        if name not in able | {'auto'} or not able:
            listed = ', '.join(repr(t) for t in limited)
            only = ' or '.join(sorted(able)) or 'no single'
            raise BackendError(f'task {listed} runs on the {only} backend only, not {name}; '
                               f'use backend {" or ".join(sorted(able))} or drop {listed} '
                               'from tasks')
        name = sorted(able)[0] if name == 'auto' else name
    if name != 'auto':
        return _create(name, model, input_size, tasks, device, precision, cache_dir, log,
                       config)
    found = candidates(device)
    if device.type == 'cuda' and 'tensorrt' not in found:
        _warn_no_tensorrt(log)
    for candidate in found:
        try:
            backend = _create(candidate, model, input_size, tasks, device, precision,
                              cache_dir, log, config)
        except BackendError as error:
            if candidate == 'torch':
                raise
            loud = 'WARNING: ' if candidate == 'tensorrt' else ''
            log(f'{loud}backend auto: {candidate} is not usable ({error}); trying the next one')
            continue
        log(f'backend auto -> {backend.describe()}')
        return backend
    raise BackendError('no backend could start')  # unreachable: torch raises or returns


_WARNED = set()


def tensorrt_missing_reason() -> str:
    """Why ``auto`` cannot use TensorRT on a CUDA device ('' when it can try)."""
    if not _installed('tensorrt'):
        return 'the tensorrt Python package is not installed'
    missing = [m for m in _EXPORT_MODULES if not _installed(m)]
    if missing:
        return f'{" and ".join(missing)} (needed to export the engines) not installed'
    return ''


def _warn_no_tensorrt(log: Callable[[str], None]) -> None:
    """Say once per process, loudly, that a GPU runs without TensorRT, why, and the fix."""
    reason = tensorrt_missing_reason()
    if not reason or 'tensorrt' in _WARNED:
        return
    _WARNED.add('tensorrt')
    from tipsv2_ros.runtime.backends.tensorrt.build import INSTALL_HINT
    log(f'WARNING: backend auto on a CUDA device without TensorRT: {reason}. The image path '
        f'runs about 3x slower than with TensorRT fp16. Fix: {INSTALL_HINT}')


def _create(name, model, input_size, tasks, device, precision, cache_dir, log,
            config: RuntimeConfig) -> Backend:
    precision = resolve_precision(precision, name, device)
    return FACTORIES[name](model, input_size, tasks, device, precision, cache_dir, log, config)


def _torch(model, input_size, tasks, device, precision, cache_dir, log, config):
    from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
    try:
        return TorchBackend(model, input_size, tasks, precision)
    except (ValueError, RuntimeError) as error:
        raise BackendError(f'torch backend: {error}') from None


def _need_export_modules(backend: str) -> None:
    missing = [m for m in _EXPORT_MODULES if not _installed(m)]
    if missing:
        raise BackendError(f'backend {backend} exports the image path to ONNX first, which '
                           f'needs {" and ".join(missing)}: pip install onnx onnxscript')


def _onnxruntime(model, input_size, tasks, device, precision, cache_dir, log, config):
    if not _installed('onnxruntime'):
        raise BackendError('onnxruntime is not installed: pip install onnxruntime (or '
                           'onnxruntime-gpu for CUDA)')
    if precision not in ('fp32', 'int8') or (precision == 'int8' and device.type != 'cpu'):
        raise BackendError(f'backend onnxruntime runs fp32 only, or int8 on the CPU (asked: '
                           f'{precision} on {device}); use precision fp32, or backend '
                           'tensorrt for a parity-checked fp16')
    _need_export_modules('onnxruntime')
    from tipsv2_ros.runtime import export
    from tipsv2_ros.runtime.backends.onnx_backend import (export_opset, OnnxRuntimeBackend,
                                                          providers_for)
    providers_for(device)  # fail before a long export when the device cannot be served
    parts = export.export_parts(model, tasks, input_size, checkpoint_ids(tasks, config.files),
                                cache_dir, log, opset=export_opset(device))
    from tipsv2_ros.runtime import jetson

    def create(files, level='fp32', report=None):
        return OnnxRuntimeBackend(
            files, input_size, tasks, device,
            cache_dir=str(cache_dir) if cache_dir else None,
            max_batch=config.tensorrt.max_batch or jetson.default_max_batch(),
            workspace_mb=config.tensorrt.workspace_mb or jetson.default_workspace_mb(),
            precision=level, report=report)
    if precision == 'fp32':
        return create({n: p.path for n, p in parts.items()})
    from tipsv2_ros.runtime.export import int8_gate
    return int8_gate.build(model, tasks, input_size, device, parts, create, cache_dir, log,
                           config.calibration_frames)


def _tensorrt(model, input_size, tasks, device, precision, cache_dir, log, config):
    if device.type != 'cuda':
        raise BackendError(f'backend tensorrt needs a CUDA device (device is {device}); use '
                           'device cuda, or backend onnxruntime/torch on the CPU')
    if not torch.cuda.is_available():
        raise BackendError(f'backend tensorrt: this PyTorch build sees no CUDA GPU (torch '
                           f'{torch.__version__})')
    from tipsv2_ros.runtime import jetson
    from tipsv2_ros.runtime.backends.tensorrt.build import INSTALL_HINT
    if not _installed('tensorrt'):
        raise BackendError(f'TensorRT is not installed: {INSTALL_HINT}')
    _need_export_modules('tensorrt')
    from tipsv2_ros.runtime.backends.tensorrt.backend import TensorRTBackend
    try:
        return TensorRTBackend.build(
            model, input_size, tasks, device, precision, cache_dir=cache_dir,
            checkpoints=checkpoint_ids(tasks, config.files), log=log,
            max_batch=config.tensorrt.max_batch or jetson.default_max_batch(),
            workspace_mb=config.tensorrt.workspace_mb or jetson.default_workspace_mb())
    except BackendError:
        raise
    except Exception as error:  # TensorRT reports through RuntimeError/TypeError too
        raise BackendError(f'TensorRT engine build failed: {type(error).__name__}: '
                           f'{error}') from error


def checkpoint_ids(tasks: Iterable[str], files: Mapping[str, Optional[str]]) -> Dict[str, str]:
    """Identify the weight file each part is made from.

    Args:
        tasks: the tasks whose parts are wanted.
        files: weight files by role (``RuntimeConfig.files``, resolved).

    Returns:
        part name ('encoder', or a head's part) -> ``cache.checkpoint_id`` of its file; a
        part whose file is not known is left out (the export then hashes its tensors).
    """
    from tipsv2_ros.runtime.export import cache
    sources = {'encoder': 'vision_weights'}
    sources.update({REGISTRY[t].part: REGISTRY[t].files[0] for t in tasks if REGISTRY[t].part})
    return {part: cache.checkpoint_id([files[role]]) for part, role in sources.items()
            if files.get(role) and os.path.isfile(str(files[role]))}


def _triton(model, input_size, tasks, device, precision, cache_dir, log, config):
    """Connect to the Triton server of ``config.triton.url``: one setting points a fleet at it."""
    if precision != 'fp32':
        raise BackendError(f'backend triton: the repository on the server fixes the precision '
                           f'(asked: {precision}); leave precision auto, and choose it with '
                           '`tipsv2 export --triton-repo`')
    if not _installed('tritonclient'):
        raise BackendError('backend triton needs the Triton client: pip install '
                           '"tritonclient[grpc]"')
    from tipsv2_ros.runtime.backends.triton import contract as triton_contract
    from tipsv2_ros.runtime.backends.triton.backend import TritonBackend
    from tipsv2_ros.runtime.backends.triton.tls import TlsSettings
    settings = config.triton
    return TritonBackend(
        settings.url or '127.0.0.1:8001', settings.model_name or triton_contract.MODEL_NAME,
        input_size, tasks, served=triton_contract.signature(model, input_size, tasks),
        expected=triton_contract.metadata(model, input_size, tasks), device=device,
        timeout=settings.timeout, shared_memory=settings.shared_memory, log=log,
        tls=TlsSettings(settings.ssl, settings.root_cert, settings.client_cert,
                        settings.client_key))


FACTORIES: Dict[str, Factory] = {'torch': _torch, 'onnxruntime': _onnxruntime,
                                 'tensorrt': _tensorrt, 'triton': _triton}
