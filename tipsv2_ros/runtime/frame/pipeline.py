# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The per-frame path shared by the node, ``tipsv2 infer`` and the benchmark.

RGB frames -> one resize on the device -> one backend call for the whole batch -> zero-shot
labels and confidence at the decoder resolution (never per-class logits at camera
resolution) -> every task's arrays at the output size (``TaskSpec.resize``) -> numpy arrays
ready for messages, by name.
"""
import dataclasses
import time
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from tipsv2_ros.model import zero_shot
from tipsv2_ros.runtime.backends.base import Backend
from tipsv2_ros.runtime.frame import processing
from tipsv2_ros.runtime.frame.labels import LabelSet
from tipsv2_ros.tasks import REGISTRY, ZERO_SHOT

Size = Tuple[int, int]

# The released normals head predicts outward normals in a frame with x left, y up and z
# towards the camera: on the NYU images of the official decoder notebook (@4db271d) floors
# come out near (0, 0.94, 0.34) and walls facing the camera near (0, -0.35, 0.9). Negating
# gives the camera optical frame of REP 103 (x right, y down, z forward) that we publish:
# a floor seen by a level camera is (0, -1, 0), a wall facing it (0, 0, -1).
NORMALS_TO_OPTICAL = -1.0

# Frames with more pixels than 4K UHD are shrunk in uint8 before the float conversion.
HOST_SHRINK_PIXELS = 3840 * 2160


@dataclasses.dataclass(frozen=True)
class FrameResult:
    """Outputs for one frame, as numpy arrays at ``size``, by name (``TaskSpec.arrays``).

    Only the tasks run have arrays; ``result.depth`` reads like a field and is None for a
    known array that was not made. Built-in arrays: ``depth`` (H, W) float32 metres,
    ``normals`` (H, W, 3) float32 unit vectors, ``labels`` (H, W) uint8 (255 = no label) and
    ``confidence`` (H, W) uint8 (probability x 255).
    """

    size: Size
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    label_set: Optional[LabelSet] = None  # the labels ``labels`` index into
    # (h, w, D) the frame's zero-shot patch features on the device, kept for text queries
    # (`runtime.frame.query`); a copy, so a backend reusing its output buffers cannot change
    # it.
    features: Optional[torch.Tensor] = None

    def __getattr__(self, name: str) -> Optional[np.ndarray]:
        if name in {a for spec in REGISTRY for a in spec.arrays}:
            return self.arrays.get(name)
        raise AttributeError(f'FrameResult has no array {name!r}')


class Pipeline:
    """Runs frames through a backend and post-processes the outputs.

    Args:
        backend: the inference backend (owns the input size and device).
        temperature: the text checkpoint's temperature; confidences are
            softmax(cosine / temperature) over the active labels.
    """

    def __init__(self, backend: Backend, temperature: float):
        self.backend = backend
        self.temperature = float(temperature)
        self.model_output_size = processing.decoder_size(backend.input_size)
        self.timings: Dict[str, float] = {}

    def run(self, frames: Sequence[np.ndarray], tasks: FrozenSet[str],
            label_set: Optional[LabelSet] = None, output: str = 'model',
            threshold: float = 0.0) -> List[FrameResult]:
        """Process a batch of HxWx3 uint8 RGB frames (sizes may differ)."""
        tasks = frozenset(tasks) & self.backend.tasks
        if label_set is None:  # the zero-shot tasks need labels
            tasks = frozenset(t for t in tasks if REGISTRY[t].kind != ZERO_SHOT)
        sizes = [processing.output_size(output, self.backend.input_size, f.shape[:2])
                 for f in frames]
        if not tasks:
            return [FrameResult(size) for size in sizes]
        clock = _Clock(self.timings, self.backend.device)
        with torch.inference_mode():
            pixels = torch.cat([processing.to_pixel_values(
                _shrink_huge(f, self.backend.input_size), self.backend.input_size,
                self.backend.device) for f in frames])
            clock.lap('preprocess')
            dense = self.backend.infer(pixels, tasks)
            clock.lap('inference')
            # Per task, (B, C, H', W') maps at the decoder resolution, C = len(arrays) or the
            # channels of the task's one array.
            maps = {}
            for task in REGISTRY.ordered(tasks):
                spec = REGISTRY[task]
                if spec.kind == ZERO_SHOT:
                    features = dense[spec.output]
                    classifier = label_set.classifier.to(features.device, features.dtype)
                    seg = zero_shot.segment(features, classifier, self.temperature,
                                            self.model_output_size, threshold)
                    conf8 = (seg.confidence * 255).round_().to(torch.uint8)
                    maps[task] = torch.stack([seg.labels, conf8], dim=1)
                    clock.lap('zero_shot')
                else:
                    scale = NORMALS_TO_OPTICAL if spec.optical_frame else 1.0
                    maps[task] = dense[spec.output] * scale if scale != 1.0 else dense[spec.output]
            results = [self._frame(i, size, dense, maps, label_set)
                       for i, size in enumerate(sizes)]
            clock.lap('postprocess')
        return results

    def _frame(self, i, size, dense, maps, label_set) -> FrameResult:
        arrays = {}
        for task, batch in maps.items():
            spec = REGISTRY[task]
            resized = batch[i:i + 1]
            if tuple(size) != self.model_output_size or spec.resize != 'nearest':
                resized = processing.resize_dense(resized, size, spec.resize)
            if len(spec.arrays) == 1:  # one array of all channels: (H, W) or (H, W, C)
                array = resized[0].permute(1, 2, 0)
                arrays[spec.arrays[0]] = _numpy(array[..., 0] if array.shape[-1] == 1 else array)
            else:  # one array per channel
                for channel, name in enumerate(spec.arrays):
                    arrays[name] = _numpy(resized[0, channel])
        zero_shot = [REGISTRY[t] for t in maps if REGISTRY[t].kind == ZERO_SHOT]
        features = dense[zero_shot[0].output][i].clone() if zero_shot else None
        return FrameResult(tuple(size), arrays, label_set if zero_shot else None, features)


def _shrink_huge(frame: np.ndarray, size: Size) -> np.ndarray:
    """Resize frames above HOST_SHRINK_PIXELS to ``size`` in uint8 on the host first.

    The float resize of ``to_pixel_values`` converts the whole frame to float32 before it
    shrinks it: 400 MB for one 8K rgb8 frame (7680x4320), on the host or on the GPU. The
    uint8 antialiased kernel needs a few MB and is 15 times faster; its fixed-point
    arithmetic differs from the float path by less than one grey level (1/255) per pixel.
    Frames up to 4K keep the float path.
    """
    if frame.shape[0] * frame.shape[1] <= HOST_SHRINK_PIXELS:
        return frame
    return processing.resize_rgb(frame, size)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """One device-to-host copy, to a C-contiguous float32/uint8 array."""
    if tensor.dtype not in (torch.uint8, torch.float32):
        tensor = tensor.float()
    return np.ascontiguousarray(tensor.cpu().numpy())


class _Clock:
    """Records stage durations; synchronises CUDA so GPU time lands in its own stage."""

    def __init__(self, timings: Dict[str, float], device: torch.device):
        self._timings = timings
        self._cuda = torch.device(device).type == 'cuda'
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self._cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self._timings[stage] = now - self._last
        self._last = now
