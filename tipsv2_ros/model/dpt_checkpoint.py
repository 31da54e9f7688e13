# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""DPT head files -> one head's PyTorch state dict, in every spelling the official loader reads.

Mirrors tips/pytorch/decoders.py@4db271d (``_convert_scenic_checkpoint``,
``load_decoder_weights``). The released ``*_dpt.zip`` files are Scenic (Flax) trees; the
official loader also reads these spellings, and so does ``dpt_head_state``:

- Scenic keys (some key has a ``/``): with or without the ``decoder/`` prefix; the decoder's
  parameters under ``dpt/`` or directly at the top level; a fusion block's 1x1 convolution as
  ``Conv_0`` or ``out_conv`` (``Conv_0`` first); the final Dense at the top level under any of
  ``HEAD_NAMES`` (``pixel_depth_classif`` or ``pixel_depth_regress``, ``pixel_normals``,
  ``pixel_segmentation`` or ``segmentation_head``).
- flat keys (no ``/``): PyTorch names (``dpt.…``, ``head.…``) or the legacy ones
  (``reassemble.…``, ``convs.…``, ``fusion_blocks.…``, ``project.…``, a head name + ``.…``);
  the two ConvTranspose kernels are rotated 180 degrees, as the official loader does.

As safe as a strict load: a missing or mis-shaped tensor is refused with its name (here and
in ``checkpoint.load_strict``), and a head named for another task is refused. Keys the model
has no use for are ignored, as the official loader ignores them, and listed in one warning.
"""
import logging
from typing import Callable, Mapping, Optional

import numpy as np
import torch

from tipsv2_ros.model.checkpoint import (CheckpointError, infer_variant, mismatch_message,
                                         to_tensor, to_tensors)

logger = logging.getLogger(__name__)

# Flax layout -> PyTorch layout, one pure function per kind of parameter.
SCENIC_TO_TORCH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    'conv': lambda k: k.transpose(3, 2, 0, 1),  # (H, W, Cin, Cout) -> (Cout, Cin, H, W)
    # Flax ConvTranspose (transpose_kernel=False) is a plain convolution of the dilated input;
    # PyTorch's is its adjoint, so the kernel is rotated 180 degrees, then -> (Cin, Cout, H, W).
    'conv_transpose': lambda k: k[::-1, ::-1].transpose(2, 3, 0, 1),
    'dense': lambda k: k.T,  # (in, out) -> (out, in)
    'copy': lambda k: k,
}
TORCH_TO_SCENIC: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    'conv': lambda w: w.transpose(2, 3, 1, 0),
    'conv_transpose': lambda w: w.transpose(2, 3, 0, 1)[::-1, ::-1],
    'dense': lambda w: w.T,
    'copy': lambda w: w,
}
# Names of a head's final Dense layer -> its name in the official files (``TaskSpec
# .checkpoint_name``; 'segmentation' is the ADE20K head); the first of a head is the one
# the released files use (and the one ``torch_to_scenic`` writes).
HEAD_NAMES = {'pixel_depth_classif': 'depth', 'pixel_depth_regress': 'depth',
              'pixel_normals': 'normals', 'pixel_segmentation': 'segmentation',
              'segmentation_head': 'segmentation'}
# Scenic's name of a fusion block's 1x1 convolution, and the other name the loader accepts.
_FUSION_CONV_ALIASES = ('/Conv_0/', '/out_conv/')
# Flat (PyTorch-side) legacy prefixes, in the official loader's order.
LEGACY_PREFIXES = (('reassemble.', 'dpt.reassemble.'), ('convs.', 'dpt.convs.'),
                   ('fusion_blocks.', 'dpt.fusion_blocks.'), ('project.', 'dpt.project.'),
                   *((f'{name}.', 'head.') for name in HEAD_NAMES))
CONV_TRANSPOSE_KEYS = ('dpt.reassemble.resize_layers.0.weight',
                       'dpt.reassemble.resize_layers.1.weight')


def head_names(task: str) -> tuple[str, ...]:
    """Return the names the final Dense layer of ``task`` may have, the released one first."""
    return tuple(name for name, of in HEAD_NAMES.items() if of == task)


def scenic_dpt_table(task: str) -> dict[str, tuple[str, str]]:
    """Our key -> (released Scenic key without the ``decoder/`` prefix, layout kind)."""
    table = {}

    def add(torch_name: str, scenic_name: str, kind: str, bias: bool = True) -> None:
        table[f'{torch_name}.weight'] = (f'{scenic_name}/kernel', kind)
        if bias:
            table[f'{torch_name}.bias'] = (f'{scenic_name}/bias', 'copy')

    reassemble = 'dpt/reassemble_blocks'
    resize_kinds = {0: 'conv_transpose', 1: 'conv_transpose', 3: 'conv'}  # 2 is an identity
    for i in range(4):
        add(f'dpt.reassemble.out_projections.{i}', f'{reassemble}/out_projection_{i}', 'conv')
        add(f'dpt.reassemble.readout_projects.{i}', f'{reassemble}/readout_projects_{i}',
            'dense')
        if i in resize_kinds:
            add(f'dpt.reassemble.resize_layers.{i}', f'{reassemble}/resize_layers_{i}',
                resize_kinds[i])
        add(f'dpt.convs.{i}', f'dpt/convs_{i}', 'conv', bias=False)
        block, units = f'dpt/fusion_blocks_{i}', f'dpt/fusion_blocks_{i}/PreActResidualConvUnit'
        # Block 0 has only a main unit (_0); blocks 1-3 have a residual (_0) and a main (_1).
        names = {'main_unit': f'{units}_0'} if i == 0 else {
            'residual_unit': f'{units}_0', 'main_unit': f'{units}_1'}
        for unit, scope in names.items():
            for conv in ('conv1', 'conv2'):
                add(f'dpt.fusion_blocks.{i}.{unit}.{conv}', f'{scope}/{conv}', 'conv',
                    bias=False)
        add(f'dpt.fusion_blocks.{i}.out_conv', f'{block}/Conv_0', 'conv')
    add('dpt.project', 'dpt/project', 'conv')
    add('head', head_names(task)[0], 'dense')
    return table


def _spellings(scenic_key: str, task: str, dpt_level: bool) -> list[str]:
    """Every key the official loader reads ``scenic_key`` from, in its order of preference."""
    if not scenic_key.startswith('dpt/'):  # the final Dense: top level, any of its names
        leaf = scenic_key.rsplit('/', 1)[1]
        return [f'{name}/{leaf}' for name in head_names(task)]
    key = scenic_key if dpt_level else scenic_key.removeprefix('dpt/')
    conv, alias = _FUSION_CONV_ALIASES
    return [key, key.replace(conv, alias)] if conv in key else [key]


def _found_tasks(keys, separator: str) -> set[str]:
    return {task for name, task in HEAD_NAMES.items()
            if any(k.startswith(name + separator) for k in keys)}


def _check_task(found: set[str], task: str, what: str) -> None:
    if found and task not in found:
        raise CheckpointError(f'{what} holds the {" and ".join(sorted(found))} head, not the '
                              f'{task} head')


def scenic_task(arrays: Mapping[str, np.ndarray]) -> str:
    """Which task a Scenic DPT file is for, from the name of its final Dense layer."""
    found = _found_tasks([k.removeprefix('decoder/') for k in arrays], '/')
    if len(found) != 1:
        raise CheckpointError(f'expected exactly one of the heads {sorted(HEAD_NAMES)} in a '
                              f'DPT file, found {sorted(found) or "none"}')
    return found.pop()


def scenic_to_torch(arrays: Mapping[str, np.ndarray], task: Optional[str] = None,
                    what: str = 'DPT file') -> tuple[str, dict[str, torch.Tensor], list[str]]:
    """Convert a Scenic-layout head to (task, state dict without ``bin_centers``, unused keys).

    Args:
        arrays: the file's arrays, in any spelling listed in the module docstring.
        task: the head wanted; None takes it from the file's final Dense layer.
        what: the file, for error messages.
    """
    flat = {key.removeprefix('decoder/'): value for key, value in arrays.items()}
    found = _found_tasks(flat, '/')
    if task is None:
        task = scenic_task(flat)
    _check_task(found, task, what)
    dpt_level = any(key.startswith('dpt/') for key in flat)
    state, used, missing = {}, set(), []
    for name, (scenic_key, kind) in scenic_dpt_table(task).items():
        key = next((k for k in _spellings(scenic_key, task, dpt_level) if k in flat), None)
        if key is None:
            missing.append(_spellings(scenic_key, task, dpt_level)[0])
            continue
        used.add(key)
        state[name] = np.ascontiguousarray(SCENIC_TO_TORCH[kind](flat[key]))
    if missing:
        shapes = {k if dpt_level else f'dpt/{k}': v for k, v in flat.items()}
        raise CheckpointError(mismatch_message(f'{what}: Scenic {task} DPT file', missing, [],
                                               [], infer_variant(shapes, 'scenic_dpt')))
    return task, to_tensors(state), sorted(set(flat) - used)


def flat_to_torch(arrays: Mapping[str, np.ndarray], task: str, what: str = 'DPT file'
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert a head with PyTorch or legacy flat keys to (state dict, unused keys)."""
    _check_task(_found_tasks(arrays, '.'), task, what)
    expected = set(scenic_dpt_table(task))
    state, unused = {}, []
    for key, value in arrays.items():
        name = next((new + key[len(old):] for old, new in LEGACY_PREFIXES
                     if key.startswith(old)), key)
        if name not in expected:
            unused.append(key)
            continue
        tensor = to_tensor(value)
        if name in CONV_TRANSPOSE_KEYS and tensor.ndim == 4:
            tensor = tensor.flip(2, 3)  # the official loader's Flax -> PyTorch flip
        state[name] = tensor
    return state, sorted(unused)


def dpt_head_state(arrays: Mapping[str, np.ndarray], task: str, what: str
                   ) -> dict[str, torch.Tensor]:
    """Return the state dict of the ``task`` head in a DPT file of any accepted spelling.

    Keys of no use to the head are ignored and listed in one warning; what is missing or
    mis-shaped is left to ``checkpoint.load_strict`` (flat files) or refused here (Scenic).
    """
    if any('/' in key for key in arrays):
        _, state, unused = scenic_to_torch(arrays, task, what)
    else:
        state, unused = flat_to_torch(arrays, task, what)
    if unused:
        logger.warning('%s: ignored %d key(s) the %s head does not use: %s', what, len(unused),
                       task, ', '.join(unused))
    return state


def torch_to_scenic(state: Mapping[str, torch.Tensor], task: str) -> dict[str, np.ndarray]:
    """Inverse of ``scenic_to_torch`` (used to write random weights in the released format)."""
    return {f'decoder/{scenic_key}': np.ascontiguousarray(
        TORCH_TO_SCENIC[kind](state[name].detach().cpu().numpy()))
        for name, (scenic_key, kind) in scenic_dpt_table(task).items()}
