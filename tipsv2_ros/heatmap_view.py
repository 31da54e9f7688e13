# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The view of a text query's heatmap, for people: Turbo over the frame, the phrase on it.

Shared by the node (``segmentation/query/colored``) and ``tipsv2 infer --query``. numpy and
PIL (for the text) only.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tipsv2_ros import colour


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def heatmap_view(image: np.ndarray, heatmap: np.ndarray, text: str) -> np.ndarray:
    """Blend a [0, 1] heatmap over ``image`` in Turbo colours and write ``text`` on it.

    Low values leave the frame visible (weight 0.15), high ones cover it (0.75), so the
    colour says how sure the model is and the frame says where.

    Args:
        image: (H, W, 3) uint8 RGB, the frame at the heatmap's size.
        heatmap: (H, W) float values in [0, 1].
        text: written at the top left on a dark strip, e.g. the phrase and its best score.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    heatmap = np.asarray(heatmap, np.float32)
    if image.shape[:2] != heatmap.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image {image.shape} and heatmap {heatmap.shape} must be (H, W, 3) '
                         'and (H, W)')
    weight = (0.15 + 0.6 * np.clip(np.nan_to_num(heatmap), 0.0, 1.0))[..., None]
    blended = image * (1.0 - weight) + colour.turbo(heatmap) * weight
    canvas = Image.fromarray(np.round(blended).astype(np.uint8))
    height, width = heatmap.shape
    size = max(8, min(24, height // 12))
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    box = draw.textbbox((3, 2), text, font=font)
    draw.rectangle([0, 0, min(width, box[2] + 3), box[3] + 3], fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)
