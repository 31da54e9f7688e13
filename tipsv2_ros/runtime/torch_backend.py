# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The PyTorch backend: the reference, on CPU or CUDA, in fp32, fp16 or bf16."""
import contextlib
from typing import FrozenSet, Iterable, Tuple

import torch

from tipsv2_ros.model.image_path import DenseEncoder, DenseOutputs, TASKS as IMAGE_PATH_TASKS
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime.base import Backend

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
        path_tasks = self.tasks & set(IMAGE_PATH_TASKS)
        self.path = model.image_path(path_tasks, input_size).eval() if path_tasks else None
        self.ade20k = None
        if 'ade20k' in self.tasks:
            if 'segmentation' not in model.heads:
                raise ValueError("task 'ade20k' needs the segmentation head weights")
            self.ade20k = model.heads['segmentation']
        layers = model.config.dpt.intermediate_layers if (
            self.tasks & {'depth', 'normals', 'ade20k'}) else ()
        # Two encoders over the same weights: the value-trick features of the last block
        # are computed only while segmentation is asked for.
        self._encoders = {with_features: DenseEncoder(model.vision, layers, input_size,
                                                      with_features)
                          for with_features in {False, 'segmentation' in self.tasks}}

    def _autocast(self):
        if self.precision == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def infer(self, pixel_values: torch.Tensor, tasks: FrozenSet[str]) -> DenseOutputs:
        with torch.inference_mode(), self._autocast():
            encoded = self._encoders['segmentation' in tasks](pixel_values)
            depth = normals = None
            if 'depth' in tasks:
                depth = self.path.depth(encoded.intermediates).float()
            if 'normals' in tasks:
                normals = self.path.normals(encoded.intermediates).float()
            features = encoded.features.float() if 'segmentation' in tasks else None
            ade20k = self.ade20k(encoded.intermediates).float() if 'ade20k' in tasks else None
        return DenseOutputs(depth, normals, features, ade20k)

    def describe(self) -> str:
        return f'{super().describe()} ({self.precision})'
