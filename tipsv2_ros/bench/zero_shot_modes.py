# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The cost per camera frame of the two zero-shot modes: whole image and sliding windows.

Both run through ``Pipeline.run`` as the node calls it, in turn in the same rounds: the
zero-shot segmentation alone, and with depth and normals (which run once on the whole frame
in both modes). The sliding windows are the official ones (448 px every 336 px, the frame's
short side resized to 448: two windows for a 640x480 frame).
"""
from typing import List

import torch

from tipsv2_ros.bench.table import ratio_row, Row, SECTIONS
from tipsv2_ros.bench.timing import interleave, paired_ratio
from tipsv2_ros.model.zero_shot import slide_windows
from tipsv2_ros.runtime import startup
from tipsv2_ros.runtime.config import RuntimeConfig, ZeroShotConfig
from tipsv2_ros.runtime.frame.pipeline import Pipeline

NAME = 'zero-shot slide / whole'


def rows(config: RuntimeConfig, runtime, frame, label_set, iterations: int, warmup: int,
         log) -> List[Row]:
    """Time both modes on ``frame``; return timing rows and the slide / whole ratios."""
    height, width = frame.shape[:2]
    what = f'cost per {width}x{height} frame'
    if label_set is None:
        return [Row.skipped(SECTIONS[2], f'{NAME}: {what}', 'segmentation not enabled')]
    backend = runtime.backend
    settings = config.zero_shot
    slide = startup.sliding_window(
        config.replace(tasks=tuple(backend.tasks), zero_shot=ZeroShotConfig(
            'slide', settings.window, settings.stride, settings.frame_size)),
        runtime.model, backend.device, log)
    try:
        whole = Pipeline(backend, runtime.pipeline.temperature)
        sliding = Pipeline(backend, runtime.pipeline.temperature, slide)
        heads = frozenset(backend.tasks)
        cases = {'segmentation': frozenset({'segmentation'})}
        if heads != cases['segmentation']:
            cases['+'.join(sorted(heads))] = heads
        fns = {}
        for case, tasks in cases.items():
            fns[('whole', case)] = lambda t=tasks: whole.run([frame], t, label_set)
            fns[('slide', case)] = lambda t=tasks: sliding.run([frame], t, label_set)
        with torch.inference_mode():
            samples = interleave(fns, iterations, warmup, backend.device)
        windows = len(slide_windows(slide.slide_size((height, width)), slide.window,
                                    slide.stride))
    finally:
        slide.close()
    out = []
    for case in cases:
        for mode in ('whole', 'slide'):
            detail = (f'{windows} windows of {slide.window} px every {slide.stride} px'
                      if mode == 'slide' else 'one encoder pass on the resized frame')
            out.append(Row.timing(SECTIONS[2], f'zero-shot {mode}: Pipeline.run, {case}',
                                  samples[(mode, case)], note=detail))
        row = ratio_row(f'{NAME}: {what}, {case}', paired_ratio(
            samples[('slide', case)], samples[('whole', case)]), 1.0,
            "informational, no target: the price of the official recipe's finer labels",
            p50=samples[('slide', case)].p50, p90=samples[('slide', case)].p90)
        row.target, row.passed = '', None
        out.append(row)
    return out
