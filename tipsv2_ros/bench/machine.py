# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The description of the machine printed above the benchmark table."""
import importlib.metadata
import os
import platform
from typing import Dict, Optional

import torch

from tipsv2_ros.runtime import cpu


def cpu_model() -> str:
    """Return the CPU model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as info:
            for line in info:
                if line.lower().startswith(('model name', 'hardware', 'cpu model')):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown CPU'


def memory_gib() -> Optional[float]:
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def version(package: str) -> Optional[str]:
    """Return an installed distribution's version without importing it."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu(device: torch.device) -> Optional[str]:
    if torch.device(device).type != 'cuda' or not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(device)
    return f'{props.name} ({props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})'


def load_average() -> str:
    try:
        return ' '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'n/a'


def describe(device: torch.device) -> Dict[str, str]:
    """Return the facts the table header shows, as label -> text."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None
    cores = f'{os.cpu_count()} logical'
    if usable is not None and usable != os.cpu_count():
        cores += f' ({usable} usable)'
    memory = memory_gib()
    facts = {
        'cpu': f'{cpu_model()}, {cores} cores'
               + (f', {memory:.0f} GiB RAM' if memory else ''),
        'cpu precisions': cpu.describe(),
        'gpu': gpu(device) or 'none',
        'threads': f'torch intra-op {torch.get_num_threads()}',
        'software': ', '.join(f'{name} {v}' for name, v in (
            ('python', platform.python_version()), ('torch', torch.__version__),
            ('onnxruntime', version('onnxruntime')), ('transformers', version('transformers')))
            if v),
        'load average at start': load_average(),
    }
    return facts
