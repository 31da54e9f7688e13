# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The parity gate of engine sets, and which part to blame when a set fails it.

``measure`` compares a backend with PyTorch fp32 on the sample frames. When a set of engines
(the encoder and the dense heads) fails, ``blame`` re-runs the gate with one engine at a
time and PyTorch fp32 for the other parts: only the parts that fail on their own are rebuilt
at the next, safer precision level, instead of all three (on a Jetson each build takes
minutes). When no part fails on its own (the errors only add up), all are blamed.
"""
from typing import Callable, Dict, Iterable, List, Mapping

import torch

from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime import export
from tipsv2_ros.runtime.backends.base import Backend
from tipsv2_ros.runtime.export import parity

GATE_FRAMES = 6


def measure(backend: Backend, model: TipsV2, frames: int = GATE_FRAMES) -> parity.ParityReport:
    """Compare ``backend`` with PyTorch fp32 on the sample frames, one frame at a time."""
    pixels = export.sample_pixels(backend.input_size, frames, backend.device)
    return parity.compare(*parity.side_by_side(backend, model, pixels))


def torch_runners(model: TipsV2, tasks: Iterable[str], input_size) -> Dict[str, Callable]:
    """Return PyTorch fp32 stand-ins of the parts, with the engines' named inputs and outputs."""
    path = model.image_path(tasks, tuple(input_size)).eval()
    runners = {}
    for name, (module, spec) in export.part_modules(path).items():
        def run(feeds: Mapping[str, torch.Tensor], module=module, spec=spec):
            with torch.inference_mode():
                outputs = module(*(feeds[n] for n in spec.inputs))
            outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
            return dict(zip(spec.outputs, outputs))
        runners[name] = run
    return runners


def blame(engines: Mapping[str, Callable], levels: Mapping[str, str],
          reference: Mapping[str, Callable], check: Callable[[Dict, str], List[str]],
          log: Callable[[str], None]) -> List[str]:
    """Return the parts whose engine fails the gate with PyTorch for the other parts.

    Args:
        engines: part name -> the engine that failed in the set.
        levels: part name -> its precision level.
        reference: part name -> the PyTorch fp32 stand-in.
        check: (runners, level) -> the gate's failures for a backend of those runners.
        log: where the verdict per part goes.
    """
    if len(engines) == 1:
        return list(engines)
    blamed = []
    for name in engines:
        mixed = {n: engines[n] if n == name else reference[n] for n in engines}
        problems = check(mixed, levels[name])
        verdict = '; '.join(problems) if problems else 'passes'
        log(f'  gate with only the {levels[name]} {name} engine (PyTorch for the rest): '
            f'{verdict}')
        if problems:
            blamed.append(name)
    return blamed or list(engines)
