# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""P6: what a label change costs, cold (fresh cache) and with the labels cached."""
import copy
from typing import List

import torch

from tipsv2_ros.bench.sections import LABELS
from tipsv2_ros.bench.table import ratio_row, Row, SECTIONS
from tipsv2_ros.bench.timing import interleave, measure, paired_ratio
from tipsv2_ros.model import zero_shot
from tipsv2_ros.model.image_path import DenseEncoder
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime.frame.labels import LabelBank


def p6_labels(model, input_size, device, iterations: int, warmup: int) -> List[Row]:
    """set_labels for 10 labels x 9 templates, cold (fresh cache) against one encoder frame.

    The cold change runs in the model's text precision (the node's ``text_precision``), in
    the same rounds as one fp32 image encoder frame; when that precision is not fp32, the
    exact fp32 text path runs in the rounds too, for context.
    """
    if model.text is None or model.tokenizer is None:
        why = 'no text weights loaded (segmentation not enabled)'
        return [Row.skipped(SECTIONS[2], 'P6 cold: set_labels 10x9 / encoder frame', why,
                            '<= 0.2'),
                Row.skipped(SECTIONS[2], 'P6 cached: set_labels', why)]

    def bank(tips):
        return LabelBank(lambda names, templates: tips.text_classifier(names, templates)
                         .to(device))
    encoder = DenseEncoder(model.vision, model.config.dpt.intermediate_layers, input_size,
                           features=False)
    pixels = torch.rand(1, 3, *input_size, device=device)
    fns = {'cold': lambda: bank(model).build(LABELS, zero_shot.TEMPLATES),
           'encoder': lambda: encoder(pixels)}
    exact = None
    if model.text_precision != 'fp32':
        exact = TipsV2(model.config, model.vision, copy.deepcopy(model.text).float(),
                       model.tokenizer)
        fns['cold fp32'] = lambda: bank(exact).build(LABELS, zero_shot.TEMPLATES)
    with torch.inference_mode():
        samples = interleave(fns, iterations, warmup, device)
    prompts = len(LABELS) * len(zero_shot.TEMPLATES)
    tokens = model.tokenizer.tokenize(zero_shot.prompts(LABELS, zero_shot.TEMPLATES))
    lengths = (tokens.paddings == 0).sum(dim=1)
    note = (f'{prompts} prompts in one batch padded to its longest ({int(lengths.max())} '
            f'tokens; {int(lengths.sum())} real tokens, a 448x448 frame has 1026); text '
            f'encoder {model.text_precision}; encoder frame p50 '
            f'{samples["encoder"].p50 * 1e3:.0f} ms')
    if exact is not None:
        ours = bank(model).build(LABELS, zero_shot.TEMPLATES).classifier.float().cpu()
        reference = bank(exact).build(LABELS, zero_shot.TEMPLATES).classifier.float().cpu()
        cosine = torch.nn.functional.cosine_similarity(ours, reference).min()
        note += (f'; exact fp32 text: {paired_ratio(samples["cold fp32"], samples["encoder"]):.2f}'
                 f' (p50 {samples["cold fp32"].p50 * 1e3:.0f} ms); class embeddings vs fp32: '
                 f'cosine >= {cosine:.5f}')
    cold = samples['cold']
    rows = [ratio_row('P6 cold: set_labels 10x9 / encoder frame',
                      paired_ratio(cold, samples['encoder']), 0.2, note, p50=cold.p50,
                      p90=cold.p90)]
    cached_bank = bank(model)
    cached_bank.build(LABELS, zero_shot.TEMPLATES)
    cached = measure(lambda: cached_bank.build(LABELS, zero_shot.TEMPLATES), 10 * iterations,
                     warmup)
    rows.append(Row(SECTIONS[2], 'P6 cached: set_labels, labels already cached', cached.p50,
                    cached.p90, f'{cached.p50 * 1e3:.3f} ms', '< 1 ms', cached.p50 < 1e-3,
                    'validation, cache lookups and one stack'))
    return rows
