# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The sliding-window zero-shot mode on a backend (``segmentation.mode: slide``).

Mirrors ``predict_slide`` of tips/pytorch/TIPS_zeroshot_segmentation.ipynb@4db271d, the
notebook's default: the frame is resized so that its short side is the window (aspect kept,
bicubic, the notebook's ``ShortSideResize``), or to an explicit size; cut into windows of
``window`` x ``window`` pixels every ``stride`` pixels, clamped to the frame; every window
goes through the value-trick encoder at the window size; each window's cosines are upsampled
to the window and turned into probabilities; overlapping windows are averaged
(``model.zero_shot.slide_probabilities``).

Only the zero-shot features slide: depth and normals still run once on the whole frame.
The windows of all frames of a batch go through one call of a second backend of the same
kind, built for the window's size with the features only.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from tipsv2_ros.model.zero_shot import (crop_windows, encoder_shape, slide_probabilities,
                                        slide_windows, window_shape)
from tipsv2_ros.runtime.backends.base import Backend
from tipsv2_ros.runtime.frame import processing

Size = Tuple[int, int]


def check_window(window: int, stride: int) -> None:
    """Raise ValueError unless 14 <= window <= 2240 and 1 <= stride <= window."""
    if not 14 <= int(window) <= 2240 or not 1 <= int(stride) <= int(window):
        raise ValueError(f'sliding windows need 14 <= window <= 2240 and 1 <= stride <= window; '
                         f'got window {window}, stride {stride}')


def short_side_size(camera_size: Sequence[int], side: int) -> Size:
    """Return the size of the notebook's ``ShortSideResize``: the short side becomes ``side``."""
    height, width = (int(n) for n in camera_size)
    if width < height:
        return int(side * height / width), side
    return side, int(side * width / height)


def encoder_size(window: int, frame_size: Optional[Size] = None) -> Size:
    """Return the window backend's input size: the window (cut to an explicit frame size)."""
    shape = window_shape(frame_size, window) if frame_size else (window, window)
    return encoder_shape(shape)


class SlidingWindow:
    """Zero-shot label probabilities by sliding windows over each frame.

    Args:
        backend: runs the features at ``encoder_size(window, frame_size)``.
        window: the window side in pixels (448 in the official recipe).
        stride: pixels between windows (336 in the official recipe).
        frame_size: (H, W) every frame is resized to first; None: short side to ``window``.
    """

    def __init__(self, backend: Backend, window: int, stride: int,
                 frame_size: Optional[Size] = None):
        check_window(window, stride)
        self.backend = backend
        self.window, self.stride = int(window), int(stride)
        self.frame_size = tuple(frame_size) if frame_size else None
        if tuple(backend.input_size) != encoder_size(self.window, self.frame_size):
            raise ValueError(f'the window backend runs at {backend.input_size}, the windows '
                             f'need {encoder_size(self.window, self.frame_size)}')

    def slide_size(self, camera_size: Sequence[int]) -> Size:
        """Return the size a frame of ``camera_size`` is resized to before the windows."""
        return self.frame_size or short_side_size(camera_size, self.window)

    def probabilities(self, frames: Sequence[np.ndarray], classifier: torch.Tensor,
                      temperature: float) -> List[torch.Tensor]:
        """Return (C, H, W) label probabilities per frame, at its ``slide_size``."""
        crops, plans = [], []
        for frame in frames:
            size = self.slide_size(frame.shape[:2])
            pixels = processing.to_pixel_values(frame, size, self.backend.device, 'bicubic')
            windows = slide_windows(size, self.window, self.stride)
            crops.append(crop_windows(pixels, windows))
            plans.append((windows, size))
        features = self.backend.infer(torch.cat(crops), frozenset({'segmentation'})).features
        classifier = classifier.to(features.device, features.dtype)
        results, start = [], 0
        for windows, size in plans:
            results.append(slide_probabilities(features[start:start + len(windows)],
                                               classifier, windows, size, temperature))
            start += len(windows)
        return results

    def describe(self) -> str:
        """Return a one-line description for logs."""
        size = 'short side to the window' if not self.frame_size else \
            f'{self.frame_size[0]}x{self.frame_size[1]}'
        return (f'sliding windows {self.window} px every {self.stride} px ({size}) on '
                f'{self.backend.describe()}')

    def close(self) -> None:
        """Release the window backend."""
        self.backend.close()
