# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Hugging Face ``model.safetensors`` of ``google/tipsv2-*`` (and ``-dpt``) -> our state dicts.

One HF file holds both towers (and, in the ``-dpt`` repos, the three heads) under prefixes;
``hf_weights`` splits it into the parts ``checkpoint.load_strict`` checks like the official
files. Holds the Hub's key layout (``hf_key``, which changed once, with the transformers
integration); the official release formats are ``checkpoint``'s.
"""
import json
import os
import pathlib
from typing import Mapping, NamedTuple, Optional, Union

import numpy as np
import torch

from tipsv2_ros.model.checkpoint import CheckpointError, TEMPERATURE_KEYS, to_tensor
from tipsv2_ros.tasks import REGISTRY

HF_TOWERS = {'vision_encoder.': 'vision', 'text_encoder.': 'text'}
# transformers' save_pretrained undoes its renames for the text MLP on the vision MLP too,
# so files it writes name the vision MLP like the text one.
HF_VISION_RENAMES = (('.mlp.c_fc.', '.mlp.fc1.'), ('.mlp.c_proj.', '.mlp.fc2.'))
CONV_TRANSPOSE_KEYS = ('dpt.reassemble.resize_layers.0.weight',
                       'dpt.reassemble.resize_layers.1.weight')
# transformers' ``depth_decoder_activation`` (default 'relu') -> ``DPTConfig.depth_activation``.
HF_DEPTH_ACTIVATIONS = {'relu': 'relu', 'linear': 'none'}


class HFWeights(NamedTuple):
    """The parts found in one HF ``model.safetensors`` (empty dicts for absent parts)."""

    vision: dict[str, torch.Tensor]
    text: dict[str, torch.Tensor]
    temperature: Optional[float]
    heads: dict[str, dict[str, torch.Tensor]]  # checkpoint name -> DPT head state dict


def hf_heads() -> tuple[str, ...]:
    """Return the heads' names in HF files (``TaskSpec.checkpoint_name``)."""
    return tuple(spec.checkpoint_name for spec in REGISTRY.heads())


def hf_key(key: str) -> tuple[str, str]:
    """Map one HF key to (part, our key); part is 'vision', 'text', a task, or '' (unknown).

    Layout (the one transformers 5.23 reads, google/tipsv2-* after the transformers
    integration): ``vision_encoder.`` / ``text_encoder.`` + the official PyTorch names, a
    top-level ``temperature``, and per DPT task ``{task}_head.`` + the official decoder names
    without ``dpt.``, the final Linear as ``{task}_head.{task}_head.``.
    """
    for prefix, part in HF_TOWERS.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            for old, new in HF_VISION_RENAMES if part == 'vision' else ():
                name = name.replace(old, new)
            return part, name
    for task in hf_heads():
        final, prefix = f'{task}_head.{task}_head.', f'{task}_head.'
        if key.startswith(final):
            return task, 'head.' + key[len(final):]
        if key.startswith(prefix):
            return task, 'dpt.' + key[len(prefix):]
    return '', key


def hf_weights(arrays: Mapping[str, np.ndarray], flip_conv_transpose: bool = False
               ) -> HFWeights:
    """Split an HF ``model.safetensors`` into tower and head state dicts.

    Args:
        arrays: the file's arrays (``read_arrays``).
        flip_conv_transpose: rotate the two ConvTranspose kernels by 180 degrees. transformers
            5.23 loads them as stored, which is what this targets; a third-party port
            (mlx-swift-tips) reports that revisions before the transformers integration hold
            them unrotated, as converted from Flax, and need the flip.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {}
    temperature, unknown = None, []
    for key, value in arrays.items():
        if key in TEMPERATURE_KEYS:
            temperature = float(value)
            continue
        part, name = hf_key(key)
        if not part:
            unknown.append(key)
            continue
        tensor = to_tensor(value)
        if flip_conv_transpose and part in hf_heads() and name in CONV_TRANSPOSE_KEYS:
            tensor = tensor.flip(2, 3)
        parts.setdefault(part, {})[name] = tensor
    if unknown:
        raise CheckpointError(
            f'keys outside the Hugging Face TIPSv2 layout: {sorted(unknown)[:8]}')
    return HFWeights(parts.pop('vision', {}), parts.pop('text', {}), temperature, parts)


def hf_depth_activation(weights: Union[str, os.PathLike]) -> Optional[str]:
    """Return the depth activation the HF ``config.json`` next to HF DPT weights asks for.

    transformers reads ``depth_decoder_activation`` from a ``tipsv2_dpt`` config (absent:
    'relu', its default) and applies it after the depth decoder's ``project``; the official
    code applies none. Weights published with such a config are meant to run with it.
    None when there is no such config.
    """
    path = pathlib.Path(weights).with_name('config.json')
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f'{path}: cannot read the Hugging Face config: {error}') from None
    if not isinstance(spec, Mapping) or not (spec.get('model_type') == 'tipsv2_dpt'
                                             or 'depth_decoder_activation' in spec):
        return None
    value = spec.get('depth_decoder_activation', 'relu')
    if value not in HF_DEPTH_ACTIVATIONS:
        raise CheckpointError(f'{path}: depth_decoder_activation {value!r} is not supported; '
                              f'expected one of {", ".join(HF_DEPTH_ACTIVATIONS)}')
    return HF_DEPTH_ACTIVATIONS[value]
