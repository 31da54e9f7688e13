# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The PyTorch backend: the reference, on CPU or CUDA, in fp32, fp16 or bf16."""
import contextlib
from typing import Dict, FrozenSet, Iterable, Tuple

import torch

from tipsv2_ros.model.image_path import DenseEncoder, DenseOutputs
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime.backends.base import Backend, Feeds
from tipsv2_ros.tasks import REGISTRY, ZERO_SHOT

DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


class TorchBackend(Backend):
    """Runs the image path eagerly; heads not asked for are skipped.

    Args:
        model: the loaded model (its modules are shared, not copied).
        input_size: (H, W) the image path is built for.
        tasks: the tasks that may be asked for.
        precision: 'fp32', or 'fp16'/'bf16' through autocast (LayerNorm, softmax and
            reductions stay in fp32 under autocast). On CUDA, fp32 matmuls and convolutions
            use TF32 tensor cores (PyTorch leaves TF32 off for matmuls by default: up to 8x
            slower on Ampere and later); parity references turn it off
            (``parity.strict_fp32``).
    """

    name = 'torch'

    def __init__(self, model: TipsV2, input_size: Tuple[int, int], tasks: Iterable[str],
                 precision: str = 'fp32'):
        super().__init__(input_size, model.device, tasks)
        if precision not in DTYPES:
            raise ValueError(f'precision {precision!r}: expected one of {sorted(DTYPES)}')
        self.precision = precision
        if self.device.type == 'cuda':
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            self.path = model.image_path(self.tasks, input_size).eval()
        except RuntimeError as error:  # a head whose weights were not loaded
            raise ValueError(str(error)) from None
        layers = self.path.encoder.layers
        # Two encoders over the same weights: the value-trick features of the last block
        # are computed only while the zero-shot segmentation is asked for.
        self._zero_shot = frozenset(s.name for s in REGISTRY if s.kind == ZERO_SHOT)
        self._encoders = {with_features: DenseEncoder(model.vision, layers, input_size,
                                                      with_features)
                          for with_features in {False, bool(self._zero_shot & self.tasks)}}

    def _autocast(self):
        if self.precision == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def run_tasks(self, pixel_values: torch.Tensor, tasks: FrozenSet[str]) -> DenseOutputs:
        with torch.inference_mode(), self._autocast():
            outputs = super().run_tasks(pixel_values, tasks)
        return DenseOutputs({name: value.float() for name, value in outputs.items()})

    def encode(self, pixel_values: torch.Tensor,
               tasks: FrozenSet[str]) -> Dict[str, torch.Tensor]:
        encoded = self._encoders[bool(self._zero_shot & tasks)](pixel_values)
        features = {s.output: encoded.features for s in REGISTRY if s.name in self._zero_shot}
        return {'intermediates': encoded.intermediates,
                **(features if encoded.features is not None else {})}

    def run_part(self, name: str, feeds: Feeds) -> Dict[str, torch.Tensor]:
        """Run a head of the image path; its one output is named after the task's output."""
        return {REGISTRY[name].output: getattr(self.path, name)(feeds['intermediates'])}

    def describe(self) -> str:
        return f'{super().describe()} ({self.precision})'
