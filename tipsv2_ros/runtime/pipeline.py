# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The per-frame path shared by the node, ``tipsv2 infer`` and the benchmark.

RGB frames -> one resize on the device -> one backend call for the whole batch -> zero-shot
labels and confidence at the decoder resolution (never per-class logits at camera
resolution) -> depth and normals at the output size -> numpy arrays ready for messages.
"""
import time
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from tipsv2_ros import processing
from tipsv2_ros.model import zero_shot
from tipsv2_ros.runtime.base import Backend
from tipsv2_ros.runtime.labels import LabelSet

Size = Tuple[int, int]

# The released normals head predicts outward normals in a frame with x left, y up and z
# towards the camera: on the NYU images of the official decoder notebook (@4db271d) floors
# come out near (0, 0.94, 0.34) and walls facing the camera near (0, -0.35, 0.9). Negating
# gives the camera optical frame of REP 103 (x right, y down, z forward) that we publish:
# a floor seen by a level camera is (0, -1, 0), a wall facing it (0, 0, -1).
NORMALS_TO_OPTICAL = -1.0

# Frames with more pixels than 4K UHD are shrunk in uint8 before the float conversion.
HOST_SHRINK_PIXELS = 3840 * 2160


def parse_input_size(value: Union[int, str, Sequence[int]]) -> Size:
    """Parse ``N``, ``'N'``, ``'HxW'`` or ``[H, W]`` into (H, W), multiples of 14."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            size = (value, value)
        elif isinstance(value, str):
            parts = value.lower().replace(' ', '').split('x')
            size = tuple(int(p) for p in parts)
        else:
            size = tuple(int(v) for v in value)
        size = size * 2 if len(size) == 1 else size
    except (TypeError, ValueError):
        raise ValueError(f'input size {value!r}: expected N or HxW') from None
    if len(size) != 2 or min(size) < 14 or max(size) > 2240 or any(s % 14 for s in size):
        raise ValueError(f'input size {value!r}: both sides must be multiples of 14 (the '
                         f'patch size) between 14 and 2240')
    return size


class FrameResult(NamedTuple):
    """Outputs for one frame, as numpy arrays at ``size``; None for tasks not run."""

    size: Size
    depth: Optional[np.ndarray] = None        # (H, W) float32, metres
    normals: Optional[np.ndarray] = None      # (H, W, 3) float32, unit vectors
    labels: Optional[np.ndarray] = None       # (H, W) uint8, 255 = no label
    confidence: Optional[np.ndarray] = None   # (H, W) uint8, probability x 255
    label_set: Optional[LabelSet] = None      # the labels ``labels`` index into
    # (h, w, D) the frame's zero-shot patch features on the device, kept for text queries
    # (`runtime.query`); a copy, so a backend reusing its output buffers cannot change it.
    features: Optional[torch.Tensor] = None


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
        if label_set is None:
            tasks -= {'segmentation'}
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
            seg = None
            if 'segmentation' in tasks:
                classifier = label_set.classifier.to(dense.features.device,
                                                     dense.features.dtype)
                seg = zero_shot.segment(dense.features, classifier, self.temperature,
                                        self.model_output_size, threshold)
                clock.lap('zero_shot')
            results = [self._frame(i, size, dense, seg, label_set) for i, size in
                       enumerate(sizes)]
            clock.lap('postprocess')
        return results

    def _frame(self, i, size, dense, seg, label_set) -> FrameResult:
        depth = normals = labels = confidence = features = None
        if dense.depth is not None:
            depth = _numpy(processing.resize_dense(dense.depth[i:i + 1], size, 'bilinear'))[0, 0]
        if dense.normals is not None:
            normals = processing.resize_dense(dense.normals[i:i + 1] * NORMALS_TO_OPTICAL, size,
                                              'normals')
            normals = _numpy(normals[0].permute(1, 2, 0))
        if seg is not None:
            conf8 = (seg.confidence[i:i + 1, None] * 255).round_().to(torch.uint8)
            labels = seg.labels[i:i + 1, None]
            if tuple(size) != self.model_output_size:
                labels = processing.resize_dense(labels, size, 'nearest')
                conf8 = processing.resize_dense(conf8, size, 'nearest')
            labels, confidence = _numpy(labels)[0, 0], _numpy(conf8)[0, 0]
            features = dense.features[i].clone()
        return FrameResult(tuple(size), depth, normals, labels, confidence,
                           label_set if seg is not None else None, features)


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
