# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Every intermediate and output of the official recipes for one image, by golden key name.

The keys and conventions are those of the golden ``expected.npz`` (without the ``_0``/``_1``
image suffix), so any reference set made with the official code can be checked against
this implementation: ``tipsv2 infer IMAGE --save-raw out.npz`` writes these arrays.
"""
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.model.zero_shot import (classifier_from_embeddings, cosine_maps, crop_windows,
                                        probabilities, prompts, slide_probabilities,
                                        slide_windows)


def raw_outputs(model: TipsV2, pixel_values: torch.Tensor, labels: Sequence[str] = (),
                templates: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Run the official recipes on (1, 3, H, W) pixels in [0, 1]; return numpy arrays.

    Text outputs need text weights, a tokenizer, labels and templates; head outputs need the
    corresponding head. What cannot be computed is left out.
    """
    out = {'pixel_values': pixel_values, 'temperature': torch.tensor(model.temperature)}
    size = tuple(pixel_values.shape[-2:])
    with torch.inference_mode():
        tokens = model.encode_image(pixel_values)
        out.update(cls_first=tokens.cls_first, cls_second=tokens.cls_second,
                   patch_tokens=tokens.patch_tokens)
        dense = model.vision.dense_features(pixel_values, model.config.dpt.intermediate_layers)
        for j, (patches, cls) in enumerate(dense.intermediates):
            out[f'dpt_input_{j}_patches'], out[f'dpt_input_{j}_cls'] = patches, cls
        out['value_patch_tokens'] = dense.value_tokens
        if 'depth' in model.heads:
            depth = model.heads['depth'](dense.intermediates)
            out['depth_lowres'] = depth
            out['depth'] = F.interpolate(depth, size=size, mode='bilinear', align_corners=False)
        if 'normals' in model.heads:
            normals = model.heads['normals'](dense.intermediates)
            out['normals_raw'], out['normals_unit'] = normals, F.normalize(normals, dim=1)
        if 'ade20k' in model.heads:
            logits = model.heads['ade20k'](dense.intermediates)
            out['segmentation_logits'] = F.interpolate(logits, size=size, mode='bilinear',
                                                       align_corners=False)
        if labels and templates and model.text is not None and model.tokenizer is not None:
            texts = prompts(labels, templates)
            ids, paddings = model.tokenizer.tokenize(texts)
            embeddings = model.encode_text(texts)
            classifier = classifier_from_embeddings(embeddings, len(templates))
            features = F.normalize(dense.value_tokens, dim=-1)
            # The official evaluation takes a plain softmax of the cosines (temperature 1).
            probs = probabilities(features, classifier, 1.0, size)[0]
            out.update(text_ids=ids, text_paddings=paddings, text_embeddings=embeddings,
                       text_classifier=classifier,
                       zeroshot_cos=cosine_maps(features, classifier)[0],
                       zeroshot_probs=probs, zeroshot_argmax=probs.argmax(dim=0))
    return {key: value.detach().cpu().numpy() for key, value in out.items()}


def raw_slide_outputs(model: TipsV2, pixel_values: torch.Tensor, classifier: torch.Tensor,
                      side: int, stride: int) -> Dict[str, np.ndarray]:
    """Return the official sliding-window zero-shot probabilities of (1, 3, H, W) pixels.

    ``predict_slide`` of the zero-shot notebook: ``side`` x ``side`` windows every ``stride``
    pixels, each through the value-trick encoder, softmax of the raw cosines (temperature 1)
    per window, averaged where windows overlap. Keys as in the golden set.
    """
    windows = slide_windows(pixel_values.shape[-2:], side, stride)
    with torch.inference_mode():
        crops = crop_windows(pixel_values, windows, model.config.vision.patch_size)
        features = F.normalize(model.vision.dense_features(crops, ()).value_tokens, dim=-1)
        probs = slide_probabilities(features, classifier.to(features), windows,
                                    pixel_values.shape[-2:], 1.0)
    return {'zeroshot_slide_probs': probs.cpu().numpy(),
            'zeroshot_slide_side_stride': np.array([side, stride], np.int64)}
