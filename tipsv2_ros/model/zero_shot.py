# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Open-vocabulary (zero-shot) segmentation from text embeddings and value-trick features.

Mirrors tips/pytorch/TIPS_zeroshot_segmentation.ipynb@4db271d (the TCL prompt templates, the
per-class prompt ensemble, ``predict_whole`` and ``predict_slide``) with one deliberate change,
the temperature:

The official evaluation takes ``softmax(cos)`` over classes. Cosines lie in [-1, 1] and, for
one patch, differ between labels by hundredths to tenths, so that softmax is nearly uniform
(about 1/C each; the golden data shows 0.33 +- 0.01 for 3 labels): fine for an argmax, useless
as a confidence to threshold. The model was trained with logits ``cos / temperature``
(temperature ~0.005, stored with the text weights), so ``softmax(cos / temperature)`` is the
model's own scale for "which label" and gives peaked, thresholdable probabilities. The argmax
is the same either way.
"""
import math
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

# Templates of the TCL paper (arXiv 2212.00785): 7 of the ImageNet prompts plus 2.
TEMPLATES: tuple[str, ...] = (
    'itap of a {}.',
    'a bad photo of a {}.',
    'a origami {}.',
    'a photo of the large {}.',
    'a {} in a video game.',
    'art of the {}.',
    'a photo of the small {}.',
    'a photo of many {}.',
    'a photo of {}s.',
)

# Label value for pixels whose confidence is below the threshold (vision_msgs convention).
UNLABELLED = 255


class Segmentation(NamedTuple):
    """Per-pixel labels and their confidence."""

    labels: torch.Tensor  # (B, H, W) uint8 index into the label list; 255 = below threshold
    confidence: torch.Tensor  # (B, H, W) float, the winning label's probability


def prompts(labels: Sequence[str], templates: Sequence[str] = TEMPLATES) -> list[str]:
    """All ``template.format(label)``, label-major (row = label * len(templates) + template)."""
    return [template.format(label) for label in labels for template in templates]


def classifier_from_embeddings(embeddings: torch.Tensor, num_templates: int) -> torch.Tensor:
    """Prompt-ensemble text embeddings into one unit vector per label.

    Args:
        embeddings: (C * T, D) raw text embeddings of ``prompts(labels, templates)``.
        num_templates: T.

    Returns:
        (C, D): L2-normalise each prompt's embedding, average over templates, L2-normalise.
    """
    per_label = embeddings.reshape(-1, num_templates, embeddings.shape[-1])  # (C, T, D)
    return F.normalize(F.normalize(per_label, dim=-1).mean(dim=1), dim=-1)


def text_classifier(encode_text: Callable[[list[str]], torch.Tensor], labels: Sequence[str],
                    templates: Sequence[str] = TEMPLATES) -> torch.Tensor:
    """Build the (C, D) zero-shot classifier for ``labels`` with a text encoder function."""
    if not labels or not templates:
        raise ValueError('need at least one label and one template')
    return classifier_from_embeddings(encode_text(prompts(labels, templates)), len(templates))


def cosine_maps(features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Cosine of each label with each patch: (B, h, w, D) unit features -> (B, C, h, w)."""
    return torch.einsum('cd,bhwd->bchw', classifier.to(features), features)


def probabilities(features: torch.Tensor, classifier: torch.Tensor, temperature: float,
                  size: Sequence[int]) -> torch.Tensor:
    """Label probabilities at ``size``: (B, C, H, W).

    The cosines are upsampled bilinearly (``align_corners=False``) to ``size`` before the
    softmax, as in the official evaluation; ``temperature=1`` reproduces it exactly.
    """
    cosines = F.interpolate(cosine_maps(features, classifier), size=tuple(size),
                            mode='bilinear', align_corners=False)
    return torch.softmax(cosines / temperature, dim=1)


def segment(features: torch.Tensor, classifier: torch.Tensor, temperature: float,
            size: Sequence[int], threshold: float = 0.0) -> Segmentation:
    """Label every pixel of a ``size`` output with the most probable label.

    Args:
        features: (B, h, w, D) L2-normalised value-trick patch features.
        classifier: (C, D) from ``text_classifier``; C must be at most 255.
        temperature: the checkpoint's contrastive temperature.
        size: (H, W) of the output; compute at the resolution you publish, never above it.
        threshold: pixels whose probability is below it get label 255.

    Returns:
        labels (B, H, W) uint8 and confidence (B, H, W).
    """
    return label_map(cosine_maps(features, classifier) / temperature, size, threshold)


# Elements of one upsampled block of scores: labels are taken in blocks of classes so that
# 255 labels at a 1080p camera resolution need ~64 MB at a time, not 2 GB.
_BLOCK_ELEMENTS = 1 << 24


def label_map(scores: torch.Tensor, size: Sequence[int], threshold: float = 0.0
              ) -> Segmentation:
    """Upsample (B, C, h, w) class scores bilinearly to ``size``; label each pixel there.

    The labels are the argmax of the upsampled scores and the confidence is the winner's
    softmax probability, exactly as upsampling all C maps at once would give; the classes
    are visited in blocks (a running max and log-sum-exp) to bound the memory.

    Args:
        scores: logits per class (cosines / temperature, or a head's logits); C <= 255.
        size: (H, W) of the output.
        threshold: pixels whose probability is below it get label 255.
    """
    batch, classes = scores.shape[:2]
    if classes > UNLABELLED:
        raise ValueError(f'at most {UNLABELLED} labels fit a uint8 label image '
                         f'({UNLABELLED} means unlabelled); got {classes}')
    block = max(1, _BLOCK_ELEMENTS // max(1, batch * int(size[0]) * int(size[1])))
    best = labels = total = None
    for start in range(0, classes, block):
        part = F.interpolate(scores[:, start:start + block].float(), size=tuple(size),
                             mode='bilinear', align_corners=False)
        value, index = part.max(dim=1)
        partial = torch.logsumexp(part, dim=1)
        if best is None:
            best, labels, total = value, index, partial
            continue
        better = value > best  # ties keep the earlier class, as one argmax would
        labels = torch.where(better, index + start, labels)
        best, total = torch.maximum(best, value), torch.logaddexp(total, partial)
    confidence = torch.exp(best - total)
    labels = labels.to(torch.uint8).masked_fill(confidence < threshold, UNLABELLED)
    return Segmentation(labels, confidence)


# --- The sliding-window mode (``predict_slide``) ---------------------------------------------

Window = tuple[int, int, int, int]  # top, bottom, left, right (pixels, end exclusive)


def slide_windows(size: Sequence[int], side: int, stride: int) -> list[Window]:
    """Windows of ``side`` x ``side`` pixels every ``stride``, clamped to an image of ``size``.

    The last row and column are shifted back to end at the image border, and a side longer
    than the image is cut to it, so every window has the same size, ``window_shape``.
    """
    height, width = (int(n) for n in size)
    if side < 1 or not 1 <= stride <= side:
        raise ValueError(f'sliding windows need 1 <= stride <= window, got window {side}, '
                         f'stride {stride}')
    rows = max(height - side + stride - 1, 0) // stride + 1
    cols = max(width - side + stride - 1, 0) // stride + 1
    windows = []
    for i in range(rows):
        for j in range(cols):
            bottom, right = min(i * stride + side, height), min(j * stride + side, width)
            windows.append((max(bottom - side, 0), bottom, max(right - side, 0), right))
    return windows


def window_shape(size: Sequence[int], side: int) -> tuple[int, int]:
    """Return the (height, width) every sliding window of an image of ``size`` has."""
    return min(side, int(size[0])), min(side, int(size[1]))


def encoder_shape(shape: Sequence[int], patch: int = 14) -> tuple[int, int]:
    """Return a window's encoder input: each side rounded up to a multiple of ``patch``."""
    return tuple(math.ceil(int(n) / patch) * patch for n in shape)


def crop_windows(pixel_values: torch.Tensor, windows: Sequence[Window],
                 patch: int = 14) -> torch.Tensor:
    """Cut (1, 3, H, W) pixels into (N, 3, h, w) windows for the encoder.

    A window whose sides are not multiples of ``patch`` is resized up to the next multiple
    with bicubic interpolation, as the official ``encode_image_value_attention`` does.
    """
    crops = torch.cat([pixel_values[..., top:bottom, left:right]
                       for top, bottom, left, right in windows])
    target = encoder_shape(crops.shape[-2:], patch)
    if tuple(crops.shape[-2:]) != target:
        crops = F.interpolate(crops, size=target, mode='bicubic', align_corners=False)
    return crops


def slide_probabilities(features: torch.Tensor, classifier: torch.Tensor,
                        windows: Sequence[Window], size: Sequence[int],
                        temperature: float) -> torch.Tensor:
    """Merge per-window label probabilities into one (C, H, W) map of an image of ``size``.

    Args:
        features: (N, h, w, D) L2-normalised value-trick features, one entry per window.
        classifier: (C, D) from ``text_classifier``.
        windows: the N windows (``slide_windows``), in the order of ``features``.
        size: (H, W) of the image the windows were cut from.
        temperature: softmax(cos / temperature) per window; 1 is the official evaluation.

    Returns:
        The per-pixel mean over the windows covering it of each window's probabilities (its
        cosines upsampled bilinearly to the window, then the softmax over labels).
    """
    probs = features.new_zeros((classifier.shape[0], int(size[0]), int(size[1])))
    counts = features.new_zeros((int(size[0]), int(size[1])))
    shape = (windows[0][1] - windows[0][0], windows[0][3] - windows[0][2])
    window_probs = probabilities(features, classifier, temperature, shape)
    for (top, bottom, left, right), window in zip(windows, window_probs):
        probs[:, top:bottom, left:right] += window
        counts[top:bottom, left:right] += 1
    return probs / counts
