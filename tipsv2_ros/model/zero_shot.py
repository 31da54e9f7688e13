# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Open-vocabulary (zero-shot) segmentation from text embeddings and value-trick features.

Mirrors tips/pytorch/TIPS_zeroshot_segmentation.ipynb@4db271d (the TCL prompt templates, the
per-class prompt ensemble, ``predict_whole``) with one deliberate change, the temperature:

The official evaluation takes ``softmax(cos)`` over classes. Cosines lie in [-1, 1] and, for
one patch, differ between labels by hundredths to tenths, so that softmax is nearly uniform
(about 1/C each; the golden data shows 0.33 +- 0.01 for 3 labels): fine for an argmax, useless
as a confidence to threshold. The model was trained with logits ``cos / temperature``
(temperature ~0.005, stored with the text weights), so ``softmax(cos / temperature)`` is the
model's own scale for "which label" and gives peaked, thresholdable probabilities. The argmax
is the same either way.
"""
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
    if classifier.shape[0] > UNLABELLED:
        raise ValueError(f'at most {UNLABELLED} labels fit a uint8 label image '
                         f'({UNLABELLED} means unlabelled); got {classifier.shape[0]}')
    confidence, labels = probabilities(features, classifier, temperature, size).max(dim=1)
    labels = labels.to(torch.uint8).masked_fill(confidence < threshold, UNLABELLED)
    return Segmentation(labels, confidence)
