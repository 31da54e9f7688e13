# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The in-process measurements: the frame path per stage, P0, P1 and P2.

Each function returns table rows; the caller decides which run (``--only``).
"""
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from tipsv2_ros.bench import flops, references
from tipsv2_ros.bench.table import ratio_row, Row, SECTIONS
from tipsv2_ros.bench.timing import interleave, measure, paired_ratio, Samples, timed
from tipsv2_ros.model import zero_shot
from tipsv2_ros.model.image_path import DenseEncoder
from tipsv2_ros.runtime.export import parity
from tipsv2_ros.runtime.frame import colour, processing
from tipsv2_ros.runtime.frame.pipeline import FrameResult

STAGE = SECTIONS[0]
# The heads the transformers reference computes (bench/references.py).
DENSE = frozenset({'depth', 'normals'})
# The labels of the frame path and of P6 (label_change.py): 10, x the 9 official templates.
LABELS = ('floor', 'wall', 'ceiling', 'person', 'door', 'table', 'chair', 'window', 'lamp',
          'plant')


def frame_path(runtime, frame: np.ndarray, label_set, tasks, iterations: int, warmup: int,
               view_max: float = 10.0) -> Tuple[List[Row], FrameResult]:
    """Stages of ``Pipeline.run`` as the node calls it, then the colour views it publishes."""
    pipeline, stages = runtime.pipeline, ('preprocess', 'inference', 'zero_shot', 'postprocess')
    for _ in range(warmup):
        pipeline.run([frame], tasks, label_set)
    recorded = {stage: Samples() for stage in stages + ('total',)}
    for _ in range(iterations):
        pipeline.timings.clear()
        recorded['total'].append(timed(lambda: pipeline.run([frame], tasks, label_set)))
        for stage in stages:
            if stage in pipeline.timings:
                recorded[stage].append(pipeline.timings[stage])
    result = pipeline.run([frame], tasks, label_set)[0]
    names = {'preprocess': 'pre-processing (resize, to float, on the device)',
             'inference': f'inference, {"+".join(sorted(tasks))} ({runtime.backend.describe()})',
             'zero_shot': 'zero-shot logits + softmax + argmax at the output size',
             'postprocess': 'post-processing (resize to output, one host copy each)'}
    rows = [Row.timing(STAGE, names[stage], recorded[stage]) for stage in stages
            if recorded[stage]]
    rows.append(Row.timing(STAGE, 'Pipeline.run total (in-process inference of the frame)',
                           recorded['total']))

    def views():
        if result.depth is not None:
            colour.colorize_depth(result.depth, 0.0, view_max)
        if result.normals is not None:
            colour.normals_to_rgb(result.normals)
        if result.labels is not None:
            colour.overlay_labels(processing.resize_rgb(frame, result.size), result.labels,
                                  colour.label_palette(len(label_set.names)))
    rows.append(Row.timing(STAGE, 'colour views (depth, normals, segmentation overlay)',
                           measure(views, iterations, warmup)))
    return rows, result


def head_parts(model, input_size, device, iterations: int, warmup: int) -> List[Row]:
    """Inference per head of the PyTorch path: encoder, +segmentation features, +each head."""
    path = model.image_path(['depth', 'normals'] if 'normals' in model.heads else ['depth'],
                            input_size)
    layers = path.encoder.layers
    plain = DenseEncoder(model.vision, layers, input_size, features=False)
    with_features = DenseEncoder(model.vision, layers, input_size, features=True)
    pixels = torch.rand(1, 3, *input_size, device=device)
    with torch.inference_mode():
        inter = plain(pixels).intermediates
        parts = {'encoder (ViT, 4 DPT inputs)': lambda: plain(pixels),
                 'encoder + segmentation features (value path)': lambda: with_features(pixels),
                 'depth head (DPT + bins)': lambda: path.depth(inter)}
        if path.normals is not None:
            parts['normals head (DPT + L2 norm)'] = lambda: path.normals(inter)
        samples = interleave(parts, iterations, warmup, device)
    rows = [Row.timing(STAGE, f'inference per head (torch fp32): {name}', values)
            for name, values in samples.items()]
    extra = np.median(np.subtract(samples['encoder + segmentation features (value path)'],
                                  samples['encoder (ViT, 4 DPT inputs)']))
    rows[1].note = f'{extra * 1e3:+.0f} ms over the encoder alone (median per round)'
    return rows


def p0(model, input_size, device, iterations: int, warmup: int,
       reference: Optional[references.Reference] = None) -> List[Row]:
    """Our eager encoder (and transformers') against the fp32 matmul bound, same rounds."""
    layers = model.config.dpt.intermediate_layers
    encoder = DenseEncoder(model.vision, layers, input_size, features=False)
    pixels = torch.rand(1, 3, *input_size, device=device)
    size = 2048
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    fns = {'ours': lambda: encoder(pixels), 'matmul': lambda: torch.matmul(a, b)}
    if reference is not None:
        fns['transformers'] = lambda: reference.encoder(pixels)
    with torch.inference_mode():
        samples = interleave(fns, 3 * iterations, warmup, device)
    work = flops.encoder_flops(model.config, input_size)
    # Best of each block of 3 rounds: the machine's rate in that stretch of time, and the
    # encoder at its best in the same stretch (load spikes hit single calls).
    mm = samples['matmul']
    blocks = range(0, len(mm) - 2, 3)
    rates = [2.0 * size ** 3 / min(mm[i:i + 3]) for i in blocks]
    bounds = [work / rate for rate in rates]
    note = (f'{work / 1e9:.4g} GFLOP (formula in bench/flops.py); torch.matmul {size}x{size} '
            f'at {np.median(rates) / 1e9:.0f} GFLOP/s -> bound {np.median(bounds) * 1e3:.0f} ms')
    rows = []
    for name in ('ours', 'transformers'):
        if name not in samples:
            continue
        best = [min(samples[name][i:i + 3]) for i in blocks]
        label = ('P0: our eager fp32 encoder / fp32 matmul bound' if name == 'ours' else
                 'P0 context: transformers eager fp32 encoder / the same bound')
        row = ratio_row(label, paired_ratio(best, bounds), 1.1, note if name == 'ours' else
                        'for comparison, no target', p50=samples[name].p50,
                        p90=samples[name].p90)
        if name != 'ours':
            row.target, row.passed = '', None
        rows.append(row)
    return rows


def transformers_or_reason(model, device):
    """Return (the transformers reference, None) or (None, why it is unavailable)."""
    try:
        return references.transformers_reference(model, device), None
    except Exception as error:  # not installed, or a variant transformers cannot build
        return None, f'transformers reference unavailable ({type(error).__name__}: {error})'


def p1_p2(model, torch_backend, other_backends: dict, input_size, device, iterations: int,
          warmup: int, skipped: dict, reference) -> List[Row]:
    """Our image path (encoder + depth + normals) against transformers', side by side."""
    pixels = torch.rand(1, 3, *input_size, device=device)
    if reference is None:
        return [Row.skipped(SECTIONS[2], name, skipped['transformers']) for name in (
            'P1: our eager fp32 / transformers eager fp32',
            'P2: onnxruntime fp32 / transformers eager fp32')]
    theirs = reference.run(pixels)
    ours = torch_backend.infer(pixels, DENSE)
    agree = ', '.join(
        f'{task} max diff {references.relative_difference(getattr(ours, task), theirs[task]):.1e}'
        for task in ('depth', 'normals') if task in theirs)
    fns = {'ours': lambda: torch_backend.infer(pixels, DENSE),
           'transformers': lambda: reference.run(pixels)}
    for name, backend in other_backends.items():
        fns[name] = (lambda b=backend: b.infer(pixels, DENSE))
    samples = interleave(fns, iterations, warmup, device)
    base = samples['transformers']
    rows = [Row.timing(SECTIONS[2], f'reference: {reference.name}, encoder + depth + normals',
                       base, note=f'same weights and input as ours; {agree}')]
    p1 = samples['ours']
    rows.append(ratio_row('P1: our eager fp32 / transformers eager fp32', paired_ratio(
        p1, base), 0.9, 'encoder + depth + normals heads on both sides (transformers built '
        "with depth_decoder_activation='linear', the official head)", p50=p1.p50, p90=p1.p90))
    limits = {'onnxruntime fp32': ('P2: onnxruntime CPU fp32 / transformers eager fp32', 0.85),
              'torch bf16': ('P2 bf16 (optional): torch bf16 autocast / transformers fp32',
                             0.5),
              'onnxruntime int8': ('P2 int8: onnxruntime int8 / transformers fp32', 0.30)}
    for name, (label, limit) in limits.items():
        if name in samples:
            values = samples[name]
            rows.append(ratio_row(label, paired_ratio(values, base), limit,
                                  skipped.get(f'{name} note', ''), p50=values.p50,
                                  p90=values.p90))
            if name == 'onnxruntime int8' and other_backends[name].precision != 'int8':
                rows[-1].passed = False  # the gate failed: the node would serve fp32
        elif name in skipped:
            rows.append(Row.skipped(SECTIONS[2], label, skipped[name], f'<= {limit:g}'))
    return rows


def int8_gate_note(backend) -> str:
    """Return the int8 gate's verdict and figures, for the P2 int8 row."""
    report = getattr(backend, 'report', None)
    figures = report.describe() if report is not None else 'no figures'
    thresholds = parity.Int8Thresholds()
    limits = (f'(gate: depth <= {thresholds.depth_median:.0%}, normals <= '
              f'{thresholds.normals_mean:g} deg, labels >= {thresholds.agreement:.0%})')
    if backend.precision == 'int8':
        return f'gate passed vs fp32 on the sample frames: {figures} {limits}'
    return (f'gate FAILED (the node serves fp32; these are the int8 graphs, timed all the '
            f'same): {figures} {limits}')


def low_precision_accuracy(fp32, low, pixels: torch.Tensor, label_set, temperature: float,
                           output_size) -> str:
    """Depth relative error, normals angle and segmentation agreement of ``low`` vs fp32."""
    tasks = fp32.tasks & low.tasks
    a, b = fp32.infer(pixels, tasks), low.infer(pixels, tasks)
    parts = []
    if a.depth is not None:
        rel = ((b.depth.float() - a.depth) / a.depth.abs().clamp_min(1e-6)).abs()
        parts.append(f'depth rel. error median {rel.median():.2%} (p99 '
                     f'{rel.flatten().quantile(0.99):.2%})')
    if a.normals is not None:
        cos = (a.normals * b.normals.float()).sum(1).clamp(-1, 1)
        parts.append(f'normals mean angle {torch.rad2deg(torch.acos(cos)).mean():.2f} deg')
    if a.features is not None and label_set is not None:
        classifier = label_set.classifier.to(a.features)
        seg_a = zero_shot.segment(a.features, classifier, temperature, output_size).labels
        seg_b = zero_shot.segment(b.features.float(), classifier, temperature,
                                  output_size).labels
        parts.append(f'segmentation agreement {(seg_a == seg_b).float().mean():.2%}')
    return 'vs fp32: ' + ', '.join(parts)


def optional_backend(create: Callable[[], object], skipped: dict, name: str) -> Optional[object]:
    """Create a backend, or record why it could not be (as the row's note)."""
    try:
        return create()
    except Exception as error:  # BackendError, ImportError, export failures...
        skipped[name] = f'{type(error).__name__}: {error}'.splitlines()[0][:200]
        return None
