# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""What a Triton server serves for the image path: the contract of server and client.

The tensor names, their shapes for a variant and input size (``signature``), the
``tipsv2.*`` metadata an ensemble publishes (``metadata``) and the check of a served model's
configuration against the local model (``check_served``). Both sides use them: the writer of
a repository (``serving/repository.py``), the PyTriton server (``serving/pytriton_server.py``)
and the client (``backends/triton/backend.py``). Light: no export machinery.
"""
from typing import Dict, Iterable, List, Mapping, NamedTuple, Sequence, Tuple

from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime.backends.base import BackendError, check_tasks
from tipsv2_ros.runtime.export import cache
from tipsv2_ros.runtime.frame import processing
from tipsv2_ros.tasks import DENSE_HEAD, REGISTRY, ZERO_SHOT

MODEL_NAME = 'tipsv2_image_path'
INPUT = 'pixel_values'
METADATA_FORMAT = '1'
Dims = Tuple[int, ...]


class ServedMismatch(BackendError):
    """A server serves something else than the local model; a configuration error."""


class Signature(NamedTuple):
    """The ensemble's tensors, dims without the batch axis (all FP32)."""

    pixel_values: Dims  # (3, H, W)
    outputs: Dict[str, Dims]  # output name -> dims, for the enabled tasks


def output_names(tasks: Iterable[str]) -> List[str]:
    """Return the served tensors of ``tasks`` (``TaskSpec.output``), in registry order."""
    return [REGISTRY[task].output for task in REGISTRY.ordered(check_tasks(tasks))]


def signature(model: TipsV2, input_size: Sequence[int], tasks: Iterable[str]) -> Signature:
    """Return the tensors of the served image path (shapes follow from the configuration)."""
    tasks, (height, width) = check_tasks(tasks), tuple(input_size)
    patch, dim = model.config.vision.patch_size, model.config.vision.embed_dim
    out_h, out_w = processing.decoder_size((height, width))
    dims = {}
    for name in REGISTRY.ordered(tasks):
        spec = REGISTRY[name]
        dims[spec.output] = ((spec.channels, out_h, out_w) if spec.kind == DENSE_HEAD
                             else (height // patch, width // patch, dim))
    return Signature((3, height, width), dims)


def vision_id(model: TipsV2) -> str:
    """Identify the image encoder's weights (zero-shot features must match the text tower)."""
    return cache.tensors_id(model.vision)[:16]


def metadata(model: TipsV2, input_size: Sequence[int], tasks: Iterable[str]) -> Dict[str, str]:
    """Return the ``tipsv2.*`` parameters a server publishes and a client checks."""
    height, width = tuple(input_size)
    return {'tipsv2.format': METADATA_FORMAT, 'tipsv2.variant': model.config.name,
            'tipsv2.input_size': f'{height}x{width}',
            'tipsv2.tasks': ','.join(REGISTRY.ordered(check_tasks(tasks))),
            'tipsv2.vision': vision_id(model)}


def check_served(config: Mapping, served: Signature, expected: Mapping[str, str],
                 tasks: Iterable[str], input_size: Sequence[int], where: str
                 ) -> Tuple[int, List[Tuple[str, str]]]:
    """Check a served model's configuration (as Triton reports it) against the local model.

    Args:
        config: the model configuration, JSON-like (``get_model_config``).
        served: the tensors the local model needs (``signature``).
        expected: the local ``metadata``.
        tasks: the local tasks.
        input_size: the local (H, W).
        where: how messages name the served model.

    Returns:
        (max_batch_size, [(key, warning)]).

    Raises:
        ServedMismatch: a tensor is missing or shaped differently, the model does not batch,
            or it serves another variant (or, with segmentation, other encoder weights).
    """
    tensors = {t['name']: t for t in config.get('input', []) + config.get('output', [])}
    task_of = {spec.output: spec.name for spec in REGISTRY}
    for name, dims in {INPUT: served.pixel_values, **served.outputs}.items():
        found = tensors.get(name)
        if found is None:
            raise ServedMismatch(f'{where} has no tensor {name!r} (for {task_of[name]}): '
                                 'serve a repository written for this task')
        got = tuple(int(d) for d in found.get('dims', ()))
        if got != dims or found.get('data_type') != 'TYPE_FP32':
            hint = ('serve a {}x{} repository or set model.input_size to the served size'
                    .format(*input_size) if name == INPUT else 'another variant?')
            raise ServedMismatch(f'{where}: {name} is {found.get("data_type")} {got}, here '
                                 f'TYPE_FP32 {dims} is expected ({hint})')
    max_batch = int(config.get('max_batch_size', 0))
    if max_batch < 1:
        raise ServedMismatch(f'{where} does not batch (max_batch_size 0): its tensors need a '
                             'batch axis')
    published = {k: v.get('string_value', '') for k, v in config.get('parameters', {}).items()}
    if not any(k.startswith('tipsv2.') for k in published):
        return max_batch, [('metadata', f'{where} publishes no tipsv2.* metadata: whether it '
                            'runs the same weights is not checked')]
    warnings = []
    for key in ('tipsv2.variant', 'tipsv2.vision'):
        if key in expected and published.get(key) != expected[key]:
            text = f'{where} serves {key} {published.get(key)!r}, here {expected[key]!r}'
            if key == 'tipsv2.variant' or any(REGISTRY[t].kind == ZERO_SHOT for t in tasks):
                raise ServedMismatch(f'{text}: serve the same image encoder weights (the '
                                     'zero-shot features meet the local text encoder)')
            warnings.append((key, f'{text}; depth and normals are those of the server'))
    return max_batch, warnings
