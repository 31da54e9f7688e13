# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""GPU rows: P4 (TensorRT fp16 / our eager fp32), P5 (time / FLOP bound); fps is in fps.py."""
from typing import List

import torch

from tipsv2_ros.bench import flops
from tipsv2_ros.bench.table import ratio_row, Row, SECTIONS
from tipsv2_ros.bench.timing import interleave, paired_ratio
from tipsv2_ros.runtime import backends


def rows(cfg, model, eager, runtime, frame, label_set, log) -> List[Row]:
    device, size, tasks = eager.device, eager.input_size, eager.tasks
    it, wu = cfg.iterations, cfg.warmup
    pixels = torch.rand(1, 3, *size, device=device)
    out: List[Row] = []
    fast, fast_name = None, ''
    try:
        fast = backends.create('tensorrt', model, size, tasks, device, 'fp16',
                               cfg.runtime.cache_dir, log, cfg.runtime)
        fast_name = 'TensorRT fp16'
    except Exception as error:  # not installed, build failure, parity gate...
        out.append(Row.skipped(SECTIONS[2], 'P4: TensorRT fp16 / our eager fp32',
                               str(error).splitlines()[0][:200], '<= 0.33'))
        from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
        fast, fast_name = TorchBackend(model, size, tasks, 'fp16'), 'torch fp16 autocast'
    samples = interleave({'eager': lambda: eager.infer(pixels, tasks),
                          'fast': lambda: fast.infer(pixels, tasks)}, it, wu, device)
    if fast_name.startswith('TensorRT'):
        out.append(ratio_row('P4: TensorRT fp16 / our eager fp32', paired_ratio(
            samples['fast'], samples['eager']), 0.33, f'tasks {"+".join(sorted(tasks))}',
            p50=samples['fast'].p50, p90=samples['fast'].p90))
    work = flops.encoder_flops(model.config, size) + sum(
        flops.dpt_head_flops(model.config, size, task) for task in ('depth', 'normals')
        if task in tasks)
    rate = flops.matmul_rate(device, torch.float16, size=8192)
    bound = work / rate
    out.append(ratio_row('P5: encoder + heads / GPU FLOP lower bound',
                         samples['fast'].p50 / bound, 4.0,
                         f'{fast_name}; {work / 1e9:.0f} GFLOP at the fp16 matmul rate '
                         f'{rate / 1e12:.0f} TFLOP/s -> bound {bound * 1e3:.2f} ms',
                         p50=samples['fast'].p50, p90=samples['fast'].p90))
    return out
