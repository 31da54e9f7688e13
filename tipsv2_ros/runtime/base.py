# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The one small interface every inference backend implements.

A backend runs the image path (encoder, the depth and normals heads, and the patch features
of the zero-shot segmentation) at a fixed input size. Text encoding never goes through a
backend: labels change without touching an exported graph or engine.
"""
import abc
from typing import FrozenSet, Iterable, Tuple

import torch

from tipsv2_ros.model.image_path import DenseOutputs

# 'segmentation' is the open-vocabulary (zero-shot) result; 'ade20k' the closed-vocabulary
# ADE20K segmentation head.
TASKS = ('depth', 'normals', 'segmentation', 'ade20k')


class BackendError(RuntimeError):
    """A backend could not be created or could not run; the message says why."""


def check_tasks(tasks: Iterable[str]) -> FrozenSet[str]:
    """Return ``tasks`` as a frozenset, rejecting names that are not tasks."""
    tasks = frozenset(tasks)
    unknown = tasks - set(TASKS)
    if unknown:
        raise ValueError(f'unknown task(s) {sorted(unknown)}; expected a subset of {TASKS}')
    return tasks


class Backend(abc.ABC):
    """An inference backend: a resource with a lifetime, used as a context manager.

    Attributes:
        name: 'torch', 'onnxruntime', 'tensorrt' or 'triton'.
        input_size: the (H, W) the image path runs at; callers resize to it.
        device: where ``infer`` expects its input and leaves its outputs.
        tasks: the tasks this backend can run (a head file may be absent).
    """

    name: str = 'base'

    def __init__(self, input_size: Tuple[int, int], device: torch.device,
                 tasks: Iterable[str]):
        self.input_size = tuple(input_size)
        self.device = torch.device(device)
        self.tasks = check_tasks(tasks)

    @abc.abstractmethod
    def infer(self, pixel_values: torch.Tensor, tasks: FrozenSet[str]) -> DenseOutputs:
        """Run the image path.

        Args:
            pixel_values: (B, 3, H, W) float32 in [0, 1] at ``input_size``, on ``device``.
            tasks: the tasks to run, a subset of ``self.tasks``; heads not asked for do not
                run and their fields are None.

        Returns:
            The dense outputs; tensors stay on ``device``.
        """

    def describe(self) -> str:
        """Return a one-line description for logs."""
        h, w = self.input_size
        return f'{self.name} on {self.device} at {h}x{w}'

    def close(self) -> None:
        """Release what the backend holds (sessions, engines, device memory)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
