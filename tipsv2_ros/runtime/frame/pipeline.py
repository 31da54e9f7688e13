# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The per-frame path shared by the node, ``tipsv2 infer`` and the benchmark.

RGB frames -> one resize on the device -> one backend call for the whole batch -> zero-shot
labels and confidence at the output size (cosines upsampled bilinearly, argmax there, as the
official evaluation does) -> every task's arrays at the output size (``TaskSpec.resize``) ->
numpy arrays ready for messages, by name. In the sliding-window mode (``sliding``) the
zero-shot features come from windows of each frame instead, through a second backend; the
heads still run once per frame.

On CUDA, frames are uploaded from pinned memory and processed on the pipeline's own stream,
and each frame's outputs come back in one copy (``transfer.to_host``); stage timings wait for
that stream only, so text embeddings computed on another stream never delay a frame.
"""
import contextlib
import dataclasses
import time
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from tipsv2_ros.model import zero_shot
from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.runtime.backends.base import Backend
from tipsv2_ros.runtime.frame import processing, transfer
from tipsv2_ros.runtime.frame.labels import LabelSet
from tipsv2_ros.runtime.frame.sliding import SlidingWindow
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
    ``normals`` (H, W, 3) float32 unit vectors, ``labels`` (H, W) uint8 (255 = no label),
    ``confidence`` (H, W) uint8 (probability x 255), and ``ade20k_labels`` /
    ``ade20k_confidence`` the same for the ADE20K classes.
    """

    size: Size
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    label_set: Optional[LabelSet] = None  # the labels ``labels`` index into
    # (h, w, D) the frame's zero-shot patch features on the device, kept for text queries
    # (`runtime.frame.query`); a copy, so a backend reusing its output buffers cannot change
    # it. None in the sliding-window mode, whose features are per window.
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
        zero_shot_tasks = frozenset(t for t in tasks if REGISTRY[t].kind == ZERO_SHOT)
        if label_set is None:  # the zero-shot tasks need labels
            tasks, zero_shot_tasks = tasks - zero_shot_tasks, frozenset()
        sizes = [processing.output_size(output, self.backend.input_size, f.shape[:2])
                 for f in frames]
        if not tasks:
            return [FrameResult(size) for size in sizes]
        clock = _Clock(self.timings, self.backend.device)
        sliding = self.slide is not None and bool(zero_shot_tasks)
        whole_tasks = tasks - zero_shot_tasks if sliding and not keep_features else tasks
        on_stream = (torch.cuda.stream(self.stream) if self.stream is not None
                     else contextlib.nullcontext())
        with torch.inference_mode(), on_stream:
            dense = DenseOutputs()
            if whole_tasks:
                pixels = torch.cat([processing.to_pixel_values(
                    _shrink_huge(f, self.backend.input_size), self.backend.input_size,
                    self.backend.device) for f in frames])
                clock.lap('preprocess')
                dense = self.backend.infer(pixels, whole_tasks)
                clock.lap('inference')
            segs = [{} for _ in frames]  # per frame, zero-shot task -> its Segmentation
            if zero_shot_tasks:
                slide_probs = self.slide.probabilities(
                    [_shrink_huge(f, self.slide.slide_size(f.shape[:2])) for f in frames],
                    label_set.classifier, self.temperature) if sliding else None
                for i, size in enumerate(sizes):
                    segs[i] = {task: self._segment(i, size, dense.get(REGISTRY[task].output),
                                                   slide_probs, label_set, threshold)
                               for task in zero_shot_tasks}
                clock.lap('zero_shot')
            results = [self._frame(i, size, tasks, dense, seg, label_set)
                       for i, (size, seg) in enumerate(zip(sizes, segs))]
            clock.lap('postprocess')
        return results

    def _segment(self, i, size, features, slide_probs, label_set, threshold
                 ) -> zero_shot.Segmentation:
        """Labels at the output size: probabilities (or cosines) upsampled, argmax there."""
        if slide_probs is None:
            features = features[i:i + 1]
            classifier = label_set.classifier.to(features.device, features.dtype)
            return zero_shot.segment(features, classifier, self.temperature, size, threshold)
        probs = processing.resize_dense(slide_probs[i][None], size, 'bilinear')
        confidence, labels = probs.max(dim=1)
        labels = labels.to(torch.uint8).masked_fill(confidence < threshold,
                                                    zero_shot.UNLABELLED)
        return zero_shot.Segmentation(labels, confidence)

    def _frame(self, i, size, tasks, dense, seg, label_set) -> FrameResult:
        """One frame's arrays of every task run, brought to the host in one copy."""
        names, tensors = [], []
        for task in REGISTRY.ordered(tasks):
            spec = REGISTRY[task]
            if spec.kind == ZERO_SHOT:
                made = _labels_and_confidence(seg[task]) if task in seg else None
            elif spec.output not in dense:
                made = None
            elif spec.resize == 'classes':
                made = _labels_and_confidence(zero_shot.label_map(
                    dense[spec.output][i:i + 1], size))
            else:
                scale = NORMALS_TO_OPTICAL if spec.optical_frame else 1.0
                resized = processing.resize_dense(dense[spec.output][i:i + 1] * scale, size,
                                                  spec.resize)[0]
                made = [resized[0] if len(resized) == 1 else resized.permute(1, 2, 0)]
            if made is not None:
                names += spec.arrays
                tensors += made
        features = None
        zero_shot_run = [REGISTRY[t] for t in seg]
        if zero_shot_run and zero_shot_run[0].output in dense:
            features = dense[zero_shot_run[0].output][i].clone()
        arrays = dict(zip(names, transfer.to_host(tensors)))
        return FrameResult(tuple(size), arrays, label_set if seg else None, features)


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
