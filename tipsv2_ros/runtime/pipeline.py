# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The per-frame path shared by the node, ``tipsv2 infer`` and the benchmark.

RGB frames -> one resize on the device -> one backend call for the whole batch -> zero-shot
labels and confidence at the output size (cosines upsampled bilinearly, argmax there, as the
official evaluation does) -> depth and normals at the output size -> numpy arrays ready for
messages. In the sliding-window mode (``sliding``) the zero-shot features come from windows
of each frame instead, through a second backend; the heads still run once per frame.

On CUDA, frames are uploaded from pinned memory and processed on the pipeline's own stream,
and each frame's outputs come back in one copy (``transfer.to_host``); stage timings wait for
that stream only, so text embeddings computed on another stream never delay a frame.
"""
import contextlib
import time
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from tipsv2_ros import processing
from tipsv2_ros.model import ade20k, zero_shot
from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.runtime import transfer
from tipsv2_ros.runtime.base import Backend
from tipsv2_ros.runtime.labels import LabelSet
from tipsv2_ros.runtime.sliding import SlidingWindow

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
    # None in the sliding-window mode, whose features are per window.
    features: Optional[torch.Tensor] = None
    ade20k_labels: Optional[np.ndarray] = None      # (H, W) uint8 ADE20K class index
    ade20k_confidence: Optional[np.ndarray] = None  # (H, W) uint8, probability x 255


class Pipeline:
    """Runs frames through a backend and post-processes the outputs.

    Args:
        backend: the inference backend (owns the input size and device).
        temperature: the text checkpoint's temperature; confidences are
            softmax(cosine / temperature) over the active labels.
        slide: the sliding-window zero-shot mode, or None for the whole-image mode.
    """

    def __init__(self, backend: Backend, temperature: float,
                 slide: Optional[SlidingWindow] = None):
        self.backend = backend
        self.temperature = float(temperature)
        self.slide = slide
        self.model_output_size = processing.decoder_size(backend.input_size)
        self.timings: Dict[str, float] = {}
        self.stream = (torch.cuda.Stream(backend.device) if backend.device.type == 'cuda'
                       else None)

    def run(self, frames: Sequence[np.ndarray], tasks: FrozenSet[str],
            label_set: Optional[LabelSet] = None, output: str = 'model',
            threshold: float = 0.0, keep_features: bool = False) -> List[FrameResult]:
        """Process a batch of HxWx3 uint8 RGB frames (sizes may differ).

        ``keep_features``: in the sliding-window mode, also compute the whole frame's
        zero-shot features (``FrameResult.features``, what text queries score); the
        whole-frame mode keeps them whenever it segments.
        """
        tasks = frozenset(tasks) & self.backend.tasks
        if label_set is None:
            tasks -= {'segmentation'}
        sizes = [processing.output_size(output, self.backend.input_size, f.shape[:2])
                 for f in frames]
        if not tasks:
            return [FrameResult(size) for size in sizes]
        clock = _Clock(self.timings, self.backend.device)
        sliding = self.slide is not None and 'segmentation' in tasks
        whole_tasks = tasks - {'segmentation'} if sliding and not keep_features else tasks
        on_stream = (torch.cuda.stream(self.stream) if self.stream is not None
                     else contextlib.nullcontext())
        with torch.inference_mode(), on_stream:
            dense = DenseOutputs(None, None, None)
            if whole_tasks:
                pixels = torch.cat([processing.to_pixel_values(
                    _shrink_huge(f, self.backend.input_size), self.backend.input_size,
                    self.backend.device) for f in frames])
                clock.lap('preprocess')
                dense = self.backend.infer(pixels, whole_tasks)
                clock.lap('inference')
            segs = [None] * len(frames)
            if 'segmentation' in tasks:
                slide_probs = self.slide.probabilities(
                    [_shrink_huge(f, self.slide.slide_size(f.shape[:2])) for f in frames],
                    label_set.classifier, self.temperature) if sliding else None
                segs = [self._segment(i, size, dense, slide_probs, label_set, threshold)
                        for i, size in enumerate(sizes)]
                clock.lap('zero_shot')
            results = [self._frame(i, size, dense, seg, label_set)
                       for i, (size, seg) in enumerate(zip(sizes, segs))]
            clock.lap('postprocess')
        return results

    def _segment(self, i, size, dense, slide_probs, label_set, threshold
                 ) -> zero_shot.Segmentation:
        """Labels at the output size: probabilities (or cosines) upsampled, argmax there."""
        if slide_probs is None:
            features = dense.features[i:i + 1]
            classifier = label_set.classifier.to(features.device, features.dtype)
            return zero_shot.segment(features, classifier, self.temperature, size, threshold)
        probs = processing.resize_dense(slide_probs[i][None], size, 'bilinear')
        confidence, labels = probs.max(dim=1)
        labels = labels.to(torch.uint8).masked_fill(confidence < threshold,
                                                    zero_shot.UNLABELLED)
        return zero_shot.Segmentation(labels, confidence)

    def _frame(self, i, size, dense, seg, label_set) -> FrameResult:
        depth = normals = labels = confidence = features = None
        if dense.depth is not None:
            depth = processing.resize_dense(dense.depth[i:i + 1], size, 'bilinear')[0, 0]
        if dense.normals is not None:
            normals = processing.resize_dense(dense.normals[i:i + 1] * NORMALS_TO_OPTICAL, size,
                                              'normals')
            normals = normals[0].permute(1, 2, 0)
        if seg is not None:
            labels, confidence = _labels_and_confidence(seg)
            if dense.features is not None:
                features = dense.features[i].clone()
        ade20k_labels = ade20k_confidence = None
        if dense.ade20k is not None:
            ade20k_labels, ade20k_confidence = _labels_and_confidence(
                ade20k.segment(dense.ade20k[i:i + 1], size))
        depth, normals, labels, confidence, ade20k_labels, ade20k_confidence = \
            transfer.to_host([depth, normals, labels, confidence, ade20k_labels,
                              ade20k_confidence])
        return FrameResult(tuple(size), depth, normals, labels, confidence,
                           label_set if seg is not None else None, features, ade20k_labels,
                           ade20k_confidence)


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


def _labels_and_confidence(seg: zero_shot.Segmentation
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One frame's labels and confidence x 255 as (H, W) uint8 tensors."""
    conf8 = (seg.confidence * 255).round_().to(torch.uint8)
    return seg.labels[0], conf8[0]


class _Clock:
    """Records stage durations; waits for the current CUDA stream (not the whole device).

    GPU time then lands in its own stage.
    """

    def __init__(self, timings: Dict[str, float], device: torch.device):
        self._timings = timings
        self._device = torch.device(device)
        self._cuda = self._device.type == 'cuda'
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self._cuda:
            torch.cuda.current_stream(self._device).synchronize()
        now = time.perf_counter()
        self._timings[stage] = now - self._last
        self._last = now
