# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Samples, percentiles and interleaved (side-by-side) measurement.

Absolute times on a shared machine drift by 2x within minutes as other jobs come and go, so
a ratio of two things measured one after the other says little. ``interleave`` runs the
things compared in turn within each round, and ``paired_ratio`` takes the median over
rounds of the per-round ratio: load that changes between rounds cancels out.
"""
import statistics
import time
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch


class Samples(list):
    """Durations in seconds, with the percentiles the table prints."""

    def percentile(self, q: float) -> float:
        """Return the q-th percentile, q in 0..100, linearly interpolated; NaN when empty."""
        if not self:
            return float('nan')
        ordered = sorted(self)
        position = (len(ordered) - 1) * q / 100.0
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)


def synchronize(device: Optional[torch.device]) -> None:
    """Wait for queued GPU work so that it is counted where it was launched."""
    if device is not None and torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: Optional[torch.device] = None) -> float:
    """Run ``fn`` once; return its wall time in seconds (GPU work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def measure(fn: Callable[[], object], iterations: int, warmup: int,
            device: Optional[torch.device] = None) -> Samples:
    """Run ``fn`` ``warmup`` times unrecorded, then ``iterations`` times recorded."""
    for _ in range(warmup):
        fn()
    return Samples(timed(fn, device) for _ in range(iterations))


def interleave(fns: Mapping[str, Callable[[], object]], iterations: int, warmup: int,
               device: Optional[torch.device] = None) -> Dict[str, Samples]:
    """Measure several functions round-robin: one call of each per round, in turn.

    The order rotates every round so that no function always runs right after another
    (caches, CPU frequency and the OS scheduler favour neither).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples = {name: Samples() for name in names}
    for round_index in range(iterations):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(timed(fns[name], device))
    return samples


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i] (samples from ``interleave``)."""
    ratios = [a / b for a, b in zip(numerator, denominator) if b > 0]
    return statistics.median(ratios) if ratios else float('nan')


def milliseconds(seconds: float) -> str:
    """Format a duration for the table: 3 significant digits, in ms."""
    if seconds != seconds:  # NaN
        return '-'
    ms = seconds * 1e3
    if ms >= 100:
        return f'{ms:.0f}'
    if ms >= 10:
        return f'{ms:.1f}'
    if ms >= 1:
        return f'{ms:.2f}'
    return f'{ms:.3f}'
