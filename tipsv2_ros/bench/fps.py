# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Frames per second by heads subscribed, and with per-task rate limits (``*.max_rate``).

Both run ``Pipeline.run`` as the node calls it, in this process, on the node's backend (CPU
or GPU). The rate rows feed frames back to back and let ``TaskRates`` pick each frame's
tasks, as the node does: tasks due on the same frame share one encoder run.
"""
import time
from typing import Dict, List

from tipsv2_ros.bench.table import Row, SECTIONS
from tipsv2_ros.bench.timing import measure, Samples, synchronize
from tipsv2_ros.runtime.frame.task_rates import TaskRates

TASK_ORDER = ('depth', 'normals', 'segmentation')


def heads_rows(runtime, frame, label_set, iterations: int, warmup: int) -> List[Row]:
    """Measure the frame rate with 0, 1, 2 and 3 heads subscribed (0: no inference runs)."""
    device, tasks = runtime.backend.device, runtime.backend.tasks
    rows = []
    for count in range(4):
        subset = frozenset(t for t in TASK_ORDER[:count] if t in tasks)
        times = measure(lambda: runtime.pipeline.run([frame], subset, label_set), iterations,
                        warmup, device)
        rows.append(Row.timing(SECTIONS[2], f'fps with {count} head(s) subscribed: '
                               f'{"+".join(sorted(subset)) or "none"}', times,
                               note=f'{1.0 / max(times.p50, 1e-9):.2f} fps in process '
                               f'({runtime.backend.describe()})'))
    return rows


def stream(runtime, frame, label_set, rates: Dict[str, float], frames: int) -> Dict:
    """Run ``frames`` frames back to back under ``rates``; return fps and runs per task."""
    wanted = frozenset(rates) & runtime.backend.tasks
    device = runtime.backend.device
    scheduler, runs, times = TaskRates(), dict.fromkeys(wanted, 0), Samples()
    start = time.perf_counter()
    for _ in range(frames):
        now = time.monotonic()
        due = scheduler.due(wanted, rates, now)
        begin = time.perf_counter()
        if due:
            runtime.pipeline.run([frame], due, label_set)
            synchronize(device)
            scheduler.ran(due, rates, now)
        times.append(time.perf_counter() - begin)
        for task in due:
            runs[task] += 1
    elapsed = time.perf_counter() - start
    return {'fps': frames / elapsed, 'times': times,
            'per_task': {task: runs[task] / elapsed for task in sorted(runs)}}


def rate_rows(runtime, frame, label_set, iterations: int, warmup: int) -> List[Row]:
    """Measure the frame rate with depth only, and other tasks every frame or at a lower rate."""
    tasks = runtime.backend.tasks
    if 'depth' not in tasks:
        return []
    # A tenth of the depth-only frame rate: slow enough to show on a CPU (a frame takes
    # seconds) and on a GPU alike.
    runtime.pipeline.run([frame], frozenset({'depth'}), label_set)  # warm
    depth_only = stream(runtime, frame, label_set, {'depth': 0.0}, max(iterations, 3))
    slow = round(depth_only['fps'] / 10, 3) or 0.001
    others = [t for t in ('segmentation', 'normals') if t in tasks]
    cases = [('depth only', {'depth': 0.0})]
    for task in others:
        cases.append((f'depth + {task}, every frame', {'depth': 0.0, task: 0.0}))
        cases.append((f'depth every frame + {task} at {slow:g} Hz', {'depth': 0.0, task: slow}))
    if len(others) == 2:
        cases.append((f'depth every frame + normals and segmentation at {slow:g} Hz',
                      {'depth': 0.0, 'normals': slow, 'segmentation': slow}))
    rows = []
    for name, rates in cases:
        result = depth_only if name == 'depth only' else stream(
            runtime, frame, label_set, rates, max(iterations, 3))
        per_task = ', '.join(f'{task} {value:.2f}/s' for task, value in
                             result['per_task'].items())
        rows.append(Row.timing(SECTIONS[2], f'fps with task rates: {name}', result['times'],
                               note=f'{result["fps"]:.2f} fps ({per_task}); '
                               'p50/p90 per frame'))
    return rows
