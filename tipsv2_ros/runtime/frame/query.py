# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Text queries ("where is ...?") scored on a frame's kept zero-shot features.

A query never runs the image encoder: the pipeline keeps each frame's value-trick patch
features (`FrameResult.features`), and a query is one text encoding per new phrase (cached
by the LabelBank) plus one matrix product of the phrases and the active labels with those
features.

What a heatmap pixel holds: the probability of the phrase against the frame's active labels
plus the phrase, ``softmax(cosine / temperature)`` over those classes, computed exactly like
the label image's confidence (cosines upsampled bilinearly to the decoder size first). So a
pixel reads "how sure the model is that this is the phrase rather than any active label"; a
raw cosine would need a per-phrase threshold. Each phrase competes with the active labels
only, never with the other phrases of the query, and an active label equal to the phrase
(ignoring case) is left out of the competition: querying an active label gives that label's
own probability, the confidence of the label image where it wins.
"""
from typing import NamedTuple, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from tipsv2_ros.model import zero_shot
from tipsv2_ros.model.tokenizer import normalise
from tipsv2_ros.runtime.frame import processing

Size = Tuple[int, int]


class QueryResult(NamedTuple):
    """Heatmaps of the phrases of one query and where each peaks."""

    heatmaps: np.ndarray     # (P, H, W) float32 probabilities in [0, 1]
    best_scores: np.ndarray  # (P,) float32, each heatmap's maximum
    best_u: np.ndarray       # (P,) int64, the maximum's column
    best_v: np.ndarray       # (P,) int64, the maximum's row


def phrase_heatmaps(features: torch.Tensor, active: torch.Tensor, active_names: Sequence[str],
                    phrase_embeddings: torch.Tensor, phrases: Sequence[str],
                    temperature: float, decoder_size: Size, size: Size) -> QueryResult:
    """Score phrases on one frame's patch features.

    Args:
        features: (h, w, D) L2-normalised value-trick patch features of the frame.
        active: (C, D) the classifier of the labels active for that frame.
        active_names: its C names.
        phrase_embeddings: (P, D) the phrases' class embeddings (same recipe as labels).
        phrases: the P phrases.
        temperature: the text checkpoint's contrastive temperature.
        decoder_size: (H', W') where the label image's probabilities are computed.
        size: (H, W) of the label image; heatmaps are resized bilinearly to it.

    Returns:
        The heatmaps and their maxima.
    """
    if phrase_embeddings.shape[0] != len(phrases) or active.shape[0] != len(active_names):
        raise ValueError('one embedding per phrase and per active label is needed')
    with torch.inference_mode():
        feats = features.float()[None]
        classifier = torch.cat([active.to(feats), phrase_embeddings.to(feats)])
        # One product for labels and phrases: (1, C + P, h, w) cosines.
        cosines = zero_shot.cosine_maps(feats, classifier)
        logits = F.interpolate(cosines, size=tuple(decoder_size), mode='bilinear',
                               align_corners=False)[0] / float(temperature)
        count = active.shape[0]
        labels, wanted = logits[:count], logits[count:]
        keys = [normalise(name) for name in active_names]  # the tokenizer's equality
        everyone = torch.logsumexp(labels, 0) if count else None
        maps = []
        for i, phrase in enumerate(phrases):
            rivals = [j for j, key in enumerate(keys) if key != normalise(phrase)]
            if not rivals:
                maps.append(torch.ones_like(wanted[i]))
                continue
            others = everyone if len(rivals) == count else torch.logsumexp(labels[rivals], 0)
            # softmax over (rivals, phrase), the phrase's entry: sigmoid(logit - logsumexp).
            maps.append(torch.sigmoid(wanted[i] - others))
        heat = torch.stack(maps)[None]  # (1, P, H', W')
        if tuple(size) != tuple(decoder_size):
            heat = processing.resize_dense(heat, size, 'bilinear').clamp_(0.0, 1.0)
        heat = heat[0].float().cpu()
        flat = heat.reshape(heat.shape[0], -1)
        best, where = flat.max(dim=1)
    width = heat.shape[-1]
    where = where.numpy()
    return QueryResult(np.ascontiguousarray(heat.numpy()), best.numpy().astype(np.float32),
                       where % width, where // width)
