# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Choosing and creating a backend by name; ``auto`` picks the fastest one available."""
import importlib.util
from typing import Callable, Iterable, Optional, Tuple

import torch

from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime.base import Backend, BackendError

NAMES = ('auto', 'torch', 'onnxruntime', 'tensorrt', 'triton')


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def choose(name: str, device: torch.device) -> str:
    """Resolve 'auto': TensorRT on a CUDA GPU where installed, else PyTorch."""
    if name != 'auto':
        return name
    if device.type == 'cuda' and _installed('tensorrt'):
        return 'tensorrt'
    return 'torch'


def resolve_precision(precision: str, backend: str, device: torch.device) -> str:
    if precision != 'auto':
        return precision
    return 'fp16' if backend == 'tensorrt' else 'fp32'


def create(name: str, model: TipsV2, input_size: Tuple[int, int], tasks: Iterable[str],
           device: torch.device, precision: str = 'auto', cache_dir: Optional[str] = None,
           log: Callable[[str], None] = print, options: Optional[dict] = None) -> Backend:
    """Create the backend ``name`` (one of NAMES) for ``model``; raise BackendError."""
    if name not in NAMES:
        raise BackendError(f'backend {name!r}: expected one of {", ".join(NAMES)}')
    chosen = choose(name, torch.device(device))
    precision = resolve_precision(precision, chosen, torch.device(device))
    if name == 'auto':
        log(f'backend auto -> {chosen} ({precision})')
    if chosen == 'torch':
        from tipsv2_ros.runtime.torch_backend import TorchBackend
        try:
            return TorchBackend(model, input_size, tasks, precision)
        except (ValueError, RuntimeError) as error:
            raise BackendError(f'torch backend: {error}') from None
    raise BackendError(f'backend {chosen!r} is not available in this build')
