# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The model's hyper-parameters as a JSON file, for weights of no official variant.

The released checkpoints are recognised by their shapes, but shapes cannot tell everything
(the number of attention heads, which blocks the DPT heads read). Weights of any other size,
such as the golden test set or a distilled model, come with a ``config.json`` in the layout
of the golden one (``vision``/``text``/``dpt`` sections; ``config.config_from_dict``). It is
given explicitly (``--config``, ``model.config``) or found next to the vision weights.
A Hugging Face ``config.json`` (another layout) next to an HF checkpoint is left alone:
official variants are recognised by their shapes.
"""
import dataclasses
import json
import os
import pathlib
import re
from typing import Mapping, Optional, Union

from tipsv2_ros.model.config import config_from_dict, config_to_dict, ModelConfig

CONFIG_FILE = 'config.json'
_SECTIONS = ('vision', 'text', 'dpt')
# What has no default (config.config_from_dict gives the rest those of the released models).
_REQUIRED = {'vision': ('embed_dim', 'depth', 'num_heads'),
             'text': ('hidden_size', 'mlp_dim', 'num_heads', 'num_layers'),
             'dpt': ('intermediate_layers', 'post_process_channels')}


def is_config_layout(spec: object) -> bool:
    """Return whether a parsed JSON value has the golden config layout."""
    return (isinstance(spec, Mapping) and all(isinstance(spec.get(s), Mapping) for s in _SECTIONS)
            and 'embed_dim' in spec['vision'])


def read_config(path: Union[str, os.PathLike]) -> ModelConfig:
    """Read a config file; raise ValueError naming the file and what is wrong with it."""
    path = pathlib.Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f'{path}: cannot read the model config: {error}') from None
    if not is_config_layout(spec):
        raise ValueError(f'{path}: not a TIPSv2 model config: expected the sections '
                         f'{", ".join(_SECTIONS)} with vision.embed_dim (the layout of '
                         'tests/data/golden/config.json)')
    missing = [f'{section}.{key}' for section, keys in _REQUIRED.items() for key in keys
               if key not in spec[section]]
    if missing:
        raise ValueError(f'{path}: the model config lacks {", ".join(missing)}')
    try:
        config = config_from_dict(spec, name='custom')
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f'{path}: bad value in the model config: {error}') from None
    _check(config, path)
    # The name goes into cache file names: keep it to a safe alphabet.
    return dataclasses.replace(config, name=re.sub(r'[^A-Za-z0-9_.-]', '_', config.name)[:64])


def find_config(weights: Union[str, os.PathLike]) -> Optional[ModelConfig]:
    """Return the config in the golden layout next to a weights file, or None if there is none."""
    path = pathlib.Path(weights).with_name(CONFIG_FILE)
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # not ours to judge: it may belong to another tool
    return read_config(path) if is_config_layout(spec) else None


def write_config(config: ModelConfig, path: Union[str, os.PathLike]) -> pathlib.Path:
    """Write ``config`` as JSON (``read_config`` reads it back equal); return the path."""
    path = pathlib.Path(path)
    path.write_text(json.dumps(config_to_dict(config), indent=1) + '\n')
    return path


def _check(config: ModelConfig, path: pathlib.Path) -> None:
    vis, dpt = config.vision, config.dpt
    problems = []
    if min(vis.embed_dim, vis.depth, vis.num_heads, vis.patch_size, vis.pos_grid) <= 0:
        problems.append('vision sizes must be positive')
    elif vis.embed_dim % vis.num_heads:
        problems.append(f'vision.embed_dim {vis.embed_dim} is not a multiple of num_heads '
                        f'{vis.num_heads}')
    if config.text.width % max(config.text.heads, 1) or config.text.heads <= 0:
        problems.append(f'text.hidden_size {config.text.width} is not a multiple of '
                        f'num_heads {config.text.heads}')
    if len(dpt.intermediate_layers) != 4 or len(dpt.post_process_channels) != 4:
        problems.append('dpt.intermediate_layers and dpt.post_process_channels need 4 entries')
    elif not all(0 <= i < vis.depth for i in dpt.intermediate_layers):
        problems.append(f'dpt.intermediate_layers {list(dpt.intermediate_layers)} must be '
                        f'blocks 0..{vis.depth - 1}')
    if problems:
        raise ValueError(f'{path}: ' + '; '.join(problems))
