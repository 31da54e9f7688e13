# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Colour views of the outputs, for people: depth as Turbo, normals as RGB, label overlays.

numpy only; the node publishes them for RViz (``*/colored``) and ``tipsv2 infer``/``demo``
write them as PNGs. Each is one lookup or fixed-point pass, cheap next to inference.
"""
import functools
from typing import Optional

import numpy as np

from tipsv2_ros.model import ade20k

# Google's Turbo colormap (Mikhailov 2019, Apache-2.0): every 15th of its 256 entries, as
# uint8 RGB; linear interpolation between them stays within 6 levels of the full table.
_TURBO_KEYS = np.array([
    [48, 18, 59], [63, 62, 156], [70, 102, 221], [69, 140, 253], [47, 178, 244],
    [26, 212, 208], [34, 235, 170], [82, 250, 122], [139, 255, 75], [183, 247, 53],
    [219, 226, 54], [245, 197, 58], [254, 161, 48], [249, 117, 29], [232, 75, 12],
    [206, 45, 4], [169, 22, 1], [122, 4, 3]], np.float64)


@functools.lru_cache(maxsize=None)
def _turbo_lut() -> np.ndarray:
    index = np.arange(256)
    keys = np.arange(0, 256, 15)
    lut = np.stack([np.interp(index, keys, _TURBO_KEYS[:, c]) for c in range(3)], axis=-1)
    lut = np.round(lut).astype(np.uint8)  # (256, 3)
    lut.flags.writeable = False
    return lut


def colorize_depth(depth: np.ndarray, vmin: Optional[float] = None,
                   vmax: Optional[float] = None) -> np.ndarray:
    """Colour an (H, W) depth map with Turbo: near is red, far is blue, invalid is black.

    Args:
        depth: depth in metres; NaN and infinities count as invalid.
        vmin: depth shown fully red; the smallest valid depth when None.
        vmax: depth shown fully blue; the largest valid depth when None.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth)
    if vmin is None:
        vmin = float(np.min(depth, where=valid, initial=np.inf))
    if vmax is None:
        vmax = float(np.max(depth, where=valid, initial=-np.inf))
    if not (np.isfinite(vmin) and np.isfinite(vmax)):  # no valid pixel at all
        vmin, vmax = 0.0, 1.0
    scale = 255.0 / max(vmax - vmin, 1e-6)
    index = np.clip((vmax - depth) * np.float32(scale) + 0.5, 0, 255, where=valid,
                    out=np.zeros(depth.shape, np.float32))
    rgb = _turbo_lut()[index.astype(np.uint8)]
    rgb[~valid] = 0
    return rgb


def turbo(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (NaN counts as 0) to Turbo colours: 0 blue, 1 red.

    Returns:
        (..., 3) uint8 RGB.
    """
    index = np.nan_to_num(np.clip(np.asarray(values, np.float32), 0.0, 1.0)) * 255 + 0.5
    return _turbo_lut()[index.astype(np.uint8)]


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Map (H, W, 3) unit normals to colours, (n + 1) / 2 * 255; NaN is black.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    rgb = np.clip((np.asarray(normals, dtype=np.float32) + 1) * 127.5 + 0.5, 0, 255)
    return np.nan_to_num(rgb, nan=0.0, copy=False).astype(np.uint8)


def overlay_labels(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
                   alpha: float = 0.5) -> np.ndarray:
    """Blend label colours over an image; label 255 (no label) leaves the image unchanged.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) uint8 label ids.
        palette: (N, 3) uint8 colours; ids past N reuse them cyclically.
        alpha: weight of the label colour, in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if image.shape[:2] != labels.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image {image.shape} and labels {labels.shape} must be (H, W, 3) '
                         'and (H, W)')
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    colours = np.zeros((256, 3), np.uint16)
    colours[:255] = np.resize(np.asarray(palette, np.uint16).reshape(-1, 3), (255, 3))
    weights = np.full(256, int(round(alpha * 256)), np.uint16)
    weights[255] = 0
    # Fixed point with weights out of 256: uint16 cannot overflow as the weights sum to 256.
    a = weights[labels][..., None]
    out = (image * (256 - a) + colours[labels] * a + 128) >> 8
    return out.astype(np.uint8)


def label_palette(n: int) -> np.ndarray:
    """Return ``n`` distinct, deterministic colours as an (n, 3) uint8 array.

    Hues follow the golden angle so that consecutive labels differ strongly; saturation and
    value alternate so that hues which come close again still differ.
    """
    i = np.arange(n)
    hue = (i * 0.6180339887498949) % 1.0
    sat = np.where(i % 2, 0.65, 0.95)
    val = np.array([1.0, 0.8, 0.6])[(i // 2) % 3]
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6) % 6  # (n, 3): the HSV -> RGB formula
    rgb = val[:, None] * (1 - sat[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1))
    return np.round(rgb * 255).astype(np.uint8)


def depth_view(depth: np.ndarray, label_count: int, background, view_max: float) -> np.ndarray:
    """Draw depth as Turbo from 0 to ``view_max`` metres."""
    return colorize_depth(depth, 0.0, view_max)


def normals_view(normals: np.ndarray, label_count: int, background,
                 view_max: float) -> np.ndarray:
    """Draw normals as RGB."""
    return normals_to_rgb(normals)


def labels_view(labels: np.ndarray, label_count: int, background,
                view_max: float) -> np.ndarray:
    """Draw the labels over the frame (``background()``: the RGB frame at the labels' size)."""
    return overlay_labels(background(), labels, label_palette(label_count))


def classes_view(labels: np.ndarray, label_count: int, background,
                 view_max: float) -> np.ndarray:
    """Draw the ADE20K head's classes over the frame, one colour per class."""
    return overlay_labels(background(), labels, label_palette(len(ade20k.ade20k_classes())))


# The colour views a task's topics name (``Topic.view``): (array, number of labels,
# background, depth view range) -> (H, W, 3) uint8.
VIEWS = {'depth': depth_view, 'normals': normals_view, 'labels': labels_view,
         'classes': classes_view}
