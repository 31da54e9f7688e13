# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""PNG views of one frame's outputs, shared by ``tipsv2 infer`` and ``tipsv2 demo``.

Depth as a colormap with its range, normals as RGB, the segmentation as an overlay with a
legend. Outputs of random weights carry a red banner on every image: they are meaningless.
"""
import pathlib
import re
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tipsv2_ros.runtime.frame import colour, processing
from tipsv2_ros.runtime.frame.heatmap_view import heatmap_view
from tipsv2_ros.runtime.frame.query import phrase_heatmaps

MEANINGLESS = 'RANDOM WEIGHTS - OUTPUT IS MEANINGLESS'


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _caption(image: Image.Image, text: str, meaningless: bool) -> Image.Image:
    """Add a caption strip (and the red banner for random weights) above the image."""
    strip = 18 * (2 if meaningless else 1)
    canvas = Image.new('RGB', (max(image.width, 300), image.height + strip), (20, 20, 20))
    canvas.paste(image, (0, strip))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), text, fill=(235, 235, 235), font=_font())
    if meaningless:
        draw.rectangle([0, 18, canvas.width, 35], fill=(200, 0, 0))
        draw.text((4, 21), MEANINGLESS, fill=(255, 255, 255), font=_font())
    return canvas


def _legend(image: Image.Image, names: Sequence[str], palette: np.ndarray,
            counts: np.ndarray) -> Image.Image:
    """Append a legend column: colour, label and share of pixels, most frequent first."""
    order = [i for i in np.argsort(-counts) if counts[i] > 0]
    unlabelled = counts.sum() == 0 or len(order) < len(names)
    rows = 16
    height = max(image.height, rows * (len(order) + 2))
    canvas = Image.new('RGB', (image.width + 170, height), (20, 20, 20))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    total = max(int(counts.sum()), 1)
    y = 4
    for i in order:
        draw.rectangle([image.width + 6, y, image.width + 18, y + 11],
                       fill=tuple(int(c) for c in palette[i]))
        draw.text((image.width + 24, y), f'{names[i][:18]} {100 * counts[i] / total:.0f}%',
                  fill=(235, 235, 235), font=_font(11))
        y += rows
    if unlabelled:
        draw.text((image.width + 6, y), f'({len(names) - len(order)} labels absent)',
                  fill=(160, 160, 160), font=_font(11))
    return canvas


def render(rgb: np.ndarray, depth: Optional[np.ndarray] = None,
           normals: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
           label_names: Sequence[str] = (), meaningless: bool = False,
           view_max: Optional[float] = None, ade20k_labels: Optional[np.ndarray] = None,
           ade20k_names: Sequence[str] = ()) -> Dict[str, Image.Image]:
    """Return the PIL views ('depth', 'normals', 'segmentation', 'ade20k') of the outputs."""
    views = {}
    if depth is not None:
        top = float(view_max if view_max else np.nanmax(depth))
        views['depth'] = _caption(
            Image.fromarray(colour.colorize_depth(depth, 0.0, top)),
            f'depth 0-{top:.2f} m (median {np.nanmedian(depth):.2f} m)', meaningless)
    if normals is not None:
        views['normals'] = _caption(Image.fromarray(colour.normals_to_rgb(normals)),
                                    'normals (x,y,z) -> (R,G,B)', meaningless)
    for name, image, names, title in (
            ('segmentation', labels, label_names, 'open-vocabulary segmentation'),
            ('ade20k', ade20k_labels, ade20k_names, 'ADE20K segmentation head (150 classes)')):
        if image is None:
            continue
        palette = colour.label_palette(len(names))
        background = processing.resize_rgb(rgb, image.shape)
        overlay = Image.fromarray(colour.overlay_labels(background, image, palette))
        counts = np.bincount(image[image != 255].ravel(), minlength=len(names))
        views[name] = _legend(_caption(overlay, title, meaningless), names, palette,
                              counts[:len(names)])
    return views


def save(out_dir: pathlib.Path, stem: str, views: Dict[str, Image.Image]) -> list:
    """Write ``<stem>_<view>.png`` files; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in views.items():
        path = out_dir / f'{stem}_{name}.png'
        image.save(path)
        paths.append(path)
    return paths


def save_queries(out_dir: pathlib.Path, stem: str, rgb: np.ndarray, result, runtime,
                 phrases: Sequence[str]) -> list:
    """Write ``<stem>_query_<phrase>.png``, each phrase's heatmap view; return the paths.

    The heatmaps are those of the node's query service, on the frame's kept features.
    """
    label_set, pipeline = result.label_set, runtime.pipeline
    embeddings = runtime.labels.embed(phrases, label_set.templates)
    scored = phrase_heatmaps(result.features, label_set.classifier, label_set.names,
                             embeddings, phrases, pipeline.temperature,
                             pipeline.model_output_size, result.size)
    background = processing.resize_rgb(rgb, result.size)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for phrase, heat, best in zip(phrases, scored.heatmaps, scored.best_scores):
        slug = re.sub(r'[^a-z0-9]+', '-', phrase.lower()).strip('-')[:60] or 'phrase'
        path = out_dir / f'{stem}_query_{slug}.png'
        Image.fromarray(heatmap_view(background, heat, f'{phrase} (best {best:.2f})')).save(path)
        paths.append(path)
    return paths
