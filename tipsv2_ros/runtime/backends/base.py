# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The one small interface every inference backend implements, and the sequence they share.

A backend runs the image path (the encoder, the dense heads of the registry, and the patch
features of the zero-shot segmentation) at a fixed input size. ``Backend.infer`` checks the
tasks, splits the batch into chunks the backend accepts, runs encoder -> heads -> outputs
through ``run_part`` and joins the chunks, by output name; a backend only says how it runs
one part. Text encoding never goes through a backend: labels change without touching an
exported graph or engine.
"""
import abc
from typing import Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

import torch

from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.tasks import DENSE_HEAD, REGISTRY

Feeds = Mapping[str, torch.Tensor]


class BackendError(RuntimeError):
    """A backend could not be created or could not run; the message says why."""


def check_tasks(tasks: Iterable[str]) -> FrozenSet[str]:
    """Return ``tasks`` as a frozenset, rejecting names that are not image-path tasks."""
    return REGISTRY.check(tasks)


class Backend(abc.ABC):
    """An inference backend: a resource with a lifetime, used as a context manager.

    Attributes:
        name: the name it is created by ('torch', 'onnxruntime', 'tensorrt', 'triton').
        input_size: the (H, W) the image path runs at; callers resize to it.
        device: where ``infer`` expects its input and leaves its outputs.
        tasks: the tasks this backend can run (a head file may be absent).
        max_batch: the largest batch one run takes (None: any); larger ones run in chunks.
    """

    name: str = 'base'
    max_batch: Optional[int] = None

    def __init__(self, input_size: Tuple[int, int], device: torch.device,
                 tasks: Iterable[str]):
        self.input_size = tuple(input_size)
        self.device = torch.device(device)
        self.tasks = check_tasks(tasks)

    def infer(self, pixel_values: torch.Tensor, tasks: Iterable[str]) -> DenseOutputs:
        """Run the image path.

        Args:
            pixel_values: (B, 3, H, W) float32 in [0, 1] at ``input_size``, on ``device``.
            tasks: the tasks to run, a subset of ``self.tasks``; heads not asked for do not
                run and their outputs are absent.

        Returns:
            The dense outputs by name; tensors stay on ``device``.
        """
        tasks = check_tasks(tasks)
        if not tasks <= self.tasks:
            raise ValueError(f'tasks {sorted(tasks - self.tasks)} were not enabled')
        chunks = [self.run_tasks(chunk, tasks)
                  for chunk in pixel_values.split(self.max_batch or len(pixel_values) or 1)]
        if len(chunks) == 1:
            return chunks[0]
        return DenseOutputs({name: torch.cat([chunk[name] for chunk in chunks])
                             for name in chunks[0]})

    def run_tasks(self, pixel_values: torch.Tensor, tasks: FrozenSet[str]) -> DenseOutputs:
        """Run the encoder, then the heads of the asked tasks, on one chunk; collect by name."""
        encoded = self.encode(pixel_values, tasks)
        # The heads read the intermediates: every encoder output but the zero-shot features.
        features = {spec.output for spec in REGISTRY if spec.kind != DENSE_HEAD}
        intermediates = {k: v for k, v in encoded.items() if k not in features}
        outputs = {}
        for spec in REGISTRY:
            if spec.name not in tasks:
                continue
            if spec.kind == DENSE_HEAD:
                outputs[spec.output] = self.run_part(spec.part, intermediates)[spec.output]
            else:
                outputs[spec.output] = encoded[spec.output]
        return DenseOutputs(outputs)

    def encode(self, pixel_values: torch.Tensor,
               tasks: FrozenSet[str]) -> Dict[str, torch.Tensor]:
        """Run the encoder part (a backend that can skip unasked outputs overrides this)."""
        return self.run_part('encoder', {'pixel_values': pixel_values})

    def run_part(self, name: str, feeds: Feeds) -> Dict[str, torch.Tensor]:
        """Run one exported part ('encoder' or a head's ``TaskSpec.part``) on named tensors."""
        raise NotImplementedError(f'{type(self).__name__} does not run parts')

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
