# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Parity metrics between a backend's outputs and the PyTorch fp32 reference.

One definition of each metric, shared by the ONNX export gate, the TensorRT engine gate, the
tests and the benchmark, so a figure in a log means the same thing everywhere.
"""
import contextlib
import math
from typing import Callable, List, Mapping, NamedTuple, Optional

import torch
import torch.nn.functional as F

from tipsv2_ros.model.image_path import DenseOutputs
from tipsv2_ros.tasks import REGISTRY, ZERO_SHOT

# The labels a gate scores zero-shot agreement with: things any indoor frame may show.
SCENE_LABELS = ('floor', 'wall', 'door', 'picture', 'box', 'ball')

# What an exported graph must reproduce before it is accepted (every output, fp32).
EXPORT_RTOL = 1e-3


class Metric(NamedTuple):
    """A parity metric (``TaskSpec.metric``): how it is computed, bounded and written."""

    compute: Callable[..., float]  # (ours, reference[, classifier]) -> value
    higher_is_better: bool
    describe: str  # '{task} {value...}' format of a figure
    failure: str  # format of a failure: task, value, bound


class Thresholds(dict):
    """Acceptance bounds of a reduced-precision engine against fp32 PyTorch, by task.

    The defaults are the registry's (``TaskSpec.bound``); keyword arguments override them,
    e.g. ``Thresholds(depth=0.02)``.
    """

    def __init__(self, **bounds: float) -> None:
        super().__init__({spec.name: spec.bound for spec in REGISTRY if spec.metric})
        self.update(bounds)


class ParityReport(dict):
    """The metrics of one comparison by task, e.g. ``ParityReport(depth=0.004)``.

    A task that was not compared is absent, and reads as None (``report.normals``).
    """

    def __init__(self, **values: Optional[float]) -> None:
        super().__init__({k: v for k, v in values.items() if v is not None})

    def __getattr__(self, name: str) -> Optional[float]:
        if name in REGISTRY:
            return self.get(name)
        raise AttributeError(name)

    def failures(self, thresholds: Optional[Mapping[str, float]] = None) -> List[str]:
        """Return a sentence per metric outside its threshold (NaN always fails)."""
        bounds, failed = thresholds if thresholds is not None else Thresholds(), []
        for task in REGISTRY.ordered(self):
            metric, value, bound = METRICS[REGISTRY[task].metric], self[task], bounds[task]
            ok = value >= bound if metric.higher_is_better else value < bound
            if not ok:
                failed.append(metric.failure.format(task=task, value=value, bound=bound))
        return failed

    def passed(self, thresholds: Optional[Mapping[str, float]] = None) -> bool:
        """Whether every compared metric is within its threshold."""
        return not self.failures(thresholds)

    def describe(self) -> str:
        """Return e.g. 'depth 0.12%, normals 0.40 deg, segmentation 99.8%'."""
        figures = [METRICS[REGISTRY[task].metric].describe.format(task=task, value=self[task])
                   for task in REGISTRY.ordered(self)]
        return ', '.join(figures) or 'nothing compared'


def max_relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Return ``max|a - b| / max(1, max|b|)``: absolute near zero, relative for large outputs."""
    ours, reference = ours.detach().double().cpu(), reference.detach().double().cpu()
    if ours.shape != reference.shape:
        raise ValueError(f'shapes differ: {tuple(ours.shape)} vs {tuple(reference.shape)}')
    if ours.numel() == 0:
        return 0.0
    scale = max(1.0, reference.abs().max().item())
    error = (ours - reference).abs().max().item()
    return error / scale if math.isfinite(error) else math.inf


def depth_relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Return the mean of ``|d - d_ref| / d_ref`` over pixels (depths are positive metres)."""
    ours, reference = ours.detach().double(), reference.detach().double()
    error = ((ours - reference).abs() / reference.abs().clamp_min(1e-6)).mean().item()
    return error if math.isfinite(error) else math.inf


def normals_angular_error(ours: torch.Tensor, reference: torch.Tensor, dim: int = 1) -> float:
    """Return the median angle in degrees between normal maps, vectors along ``dim``."""
    ours = F.normalize(ours.detach().double(), dim=dim)
    reference = F.normalize(reference.detach().double(), dim=dim)
    cosine = (ours * reference).sum(dim=dim).clamp(-1.0, 1.0)
    if not torch.isfinite(cosine).all():
        return math.inf
    return torch.rad2deg(torch.arccos(cosine)).median().item()


def argmax_agreement(ours: torch.Tensor, reference: torch.Tensor,
                     classifier: torch.Tensor) -> float:
    """Return the fraction of patches whose best label is the same.

    Args:
        ours: (B, h, w, D) zero-shot features of the backend.
        reference: (B, h, w, D) reference features.
        classifier: (C, D) label embeddings.
    """
    classifier = classifier.detach().double().to(ours.device)
    if not torch.isfinite(ours).all():
        return 0.0
    labels = (ours.detach().double() @ classifier.T).argmax(dim=-1)  # (B, h, w)
    expected = (reference.detach().double().to(ours.device) @ classifier.T).argmax(dim=-1)
    return (labels == expected).double().mean().item()


METRICS = {
    'relative_error': Metric(lambda ours, ref, classifier: depth_relative_error(ours, ref),
                             False, '{task} {value:.2%}',
                             '{task} relative error {value:.2%} >= {bound:.0%}'),
    'angular_error': Metric(lambda ours, ref, classifier: normals_angular_error(ours, ref),
                            False, '{task} {value:.2f} deg',
                            '{task} median angular error {value:.2f} deg >= {bound:g} deg'),
    'argmax_agreement': Metric(argmax_agreement, True, '{task} {value:.1%}',
                               '{task} argmax agreement {value:.2%} < {bound:.0%}'),
}


def compare(ours: DenseOutputs, reference: DenseOutputs,
            classifier: Optional[torch.Tensor] = None) -> ParityReport:
    """Compute the metric of every output present in both (agreement needs a classifier)."""
    values = {}
    for spec in REGISTRY:
        if not spec.metric or spec.output not in ours or spec.output not in reference:
            continue
        metric = METRICS[spec.metric]
        if metric.compute is argmax_agreement and classifier is None:
            continue
        mine = ours[spec.output]
        values[spec.name] = metric.compute(mine, reference[spec.output].to(mine.device),
                                           classifier)
    return ParityReport(**values)


@contextlib.contextmanager
def strict_fp32():
    """Compute a CUDA reference in true fp32: TF32 off for matmuls and convolutions."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class Int8Thresholds(NamedTuple):
    """Acceptance thresholds of an int8 image path against the fp32 path (README)."""

    depth_median: float = 0.01  # median relative depth error
    normals_mean: float = 2.0  # mean angle between normals, degrees
    agreement: float = 0.98  # fraction of patches with the same zero-shot label


class Int8Report(NamedTuple):
    """The int8 gate's figures; a field is None when its task was not compared."""

    depth_median: Optional[float] = None
    normals_mean: Optional[float] = None
    agreement: Optional[float] = None
    depth_spread: Optional[float] = None  # median |error| / the fp32 depth's p5-p95 range

    def failures(self, thresholds: Int8Thresholds = Int8Thresholds()) -> List[str]:
        """Return a sentence per figure outside its threshold (NaN always fails)."""
        failed = []
        if self.depth_median is not None and not self.depth_median <= thresholds.depth_median:
            failed.append(f'depth median relative error {self.depth_median:.2%} > '
                          f'{thresholds.depth_median:.0%}')
        if self.normals_mean is not None and not self.normals_mean <= thresholds.normals_mean:
            failed.append(f'normals mean angle {self.normals_mean:.2f} deg > '
                          f'{thresholds.normals_mean:g} deg')
        if self.agreement is not None and not self.agreement >= thresholds.agreement:
            failed.append(f'zero-shot label agreement {self.agreement:.2%} < '
                          f'{thresholds.agreement:.0%}')
        return failed

    def describe(self) -> str:
        """Return e.g. 'depth median 0.21%, normals mean 0.84 deg, labels 99.3% agree'."""
        parts = []
        if self.depth_median is not None:
            parts.append(f'depth median rel. error {self.depth_median:.2%}')
            if self.depth_spread is not None:
                parts.append(f'(= {self.depth_spread:.1%} of the depth range)')
        if self.normals_mean is not None:
            parts.append(f'normals mean angle {self.normals_mean:.2f} deg')
        if self.agreement is not None:
            parts.append(f'zero-shot labels {self.agreement:.1%} agree')
        return ', '.join(parts).replace(', (', ' (') or 'nothing compared'


def compare_int8(ours: DenseOutputs, reference: DenseOutputs,
                 classifier: Optional[torch.Tensor] = None) -> Int8Report:
    """Compute the int8 gate's figures of every output present in both."""
    depth = normals = agreement = spread = None
    if ours.depth is not None and reference.depth is not None:
        ours_d, ref_d = ours.depth.detach().double(), reference.depth.detach().double()
        error = (ours_d - ref_d).abs()
        depth = (error / ref_d.abs().clamp_min(1e-6)).median().item()
        # Random weights give nearly flat depth maps, where a relative error says little:
        # the error against the map's own range says whether the structure survives.
        low, high = torch.quantile(ref_d.flatten()[::17], torch.tensor(
            [0.05, 0.95], dtype=torch.float64)).tolist()
        spread = error.median().item() / max(high - low, 1e-9)
        depth = depth if math.isfinite(depth) else math.inf
    if ours.normals is not None and reference.normals is not None:
        a = F.normalize(ours.normals.detach().double(), dim=1)
        b = F.normalize(reference.normals.detach().double(), dim=1)
        cosine = (a * b).sum(dim=1).clamp(-1.0, 1.0)
        normals = (torch.rad2deg(torch.arccos(cosine)).mean().item()
                   if torch.isfinite(cosine).all() else math.inf)
    if ours.features is not None and reference.features is not None and classifier is not None:
        agreement = argmax_agreement(ours.features, reference.features, classifier)
    return Int8Report(depth, normals, agreement, spread)


def gate_classifier(model, tasks) -> Optional[torch.Tensor]:
    """Return the zero-shot classifier a gate compares labels with (None without segmentation).

    With the text tower: SCENE_LABELS. Without it, fixed random directions still test that
    the argmax survives.
    """
    if not any(REGISTRY[t].kind == ZERO_SHOT for t in tasks):
        return None
    if model.text is not None and model.tokenizer:
        return model.text_classifier(SCENE_LABELS)
    directions = torch.randn(16, model.config.vision.embed_dim,
                             generator=torch.Generator().manual_seed(0))
    return F.normalize(directions, dim=-1)


def side_by_side(backend, model, pixels: torch.Tensor):
    """Run ``backend`` and PyTorch fp32 on ``pixels``, one frame at a time, in strict fp32.

    Returns:
        (ours, reference, classifier): both outputs joined over the frames, by name, and the
        zero-shot classifier a gate compares labels with (``gate_classifier``).
    """
    from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
    reference = TorchBackend(model, backend.input_size, backend.tasks, 'fp32')
    with torch.inference_mode(), strict_fp32():
        runs = [[b.infer(frame[None].to(backend.device), backend.tasks) for frame in pixels]
                for b in (backend, reference)]
        classifier = gate_classifier(model, backend.tasks)
    ours, expected = (DenseOutputs({name: torch.cat([out[name] for out in run])
                                    for name in run[0]}) for run in runs)
    return ours, expected, classifier
