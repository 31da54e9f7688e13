# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Released TIPSv2 weight files -> state dicts with our (= the official PyTorch) key names.

Mirrors the npz handling of tips/pytorch/run_*_inference.py@4db271d. Loading is a strict
key/shape check whose error names the missing, unexpected and mis-shaped keys and the variant
the file's shapes point to. The DPT head files (Scenic layout and its variants) are converted
by ``dpt_checkpoint``.

Formats:
- official vision/text ``.npz``: PyTorch keys already; the text file also carries the scalar
  ``temperature`` (or ``temperature_contrastive``), which is split off.
- Scenic DPT ``*_dpt.zip``: a zip of ``.npy`` with Flax ``/`` paths; see ``dpt_checkpoint``.
- Hugging Face ``model.safetensors`` of ``google/tipsv2-*`` and ``google/tipsv2-*-dpt``:
  read here, split into parts by ``hf_checkpoint.hf_weights``.
"""
import os
import re
from typing import Mapping, NamedTuple, Optional, Union
import zipfile
import zlib

import numpy as np
import safetensors
import safetensors.numpy
import torch
from torch import nn

from tipsv2_ros.model.config import TINY, VARIANTS

PathLike = Union[str, os.PathLike]
TEMPERATURE_KEYS = ('temperature', 'temperature_contrastive')


class CheckpointError(ValueError):
    """A weight file is unreadable or does not fit the model."""


def read_arrays(path: PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz``/``.zip`` (np.load) or ``.safetensors`` file."""
    path = os.fspath(path)
    try:
        if path.endswith('.safetensors'):
            return safetensors.numpy.load_file(path)
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, Mapping):  # np.load reads a bare .npy as one array
            raise ValueError('a single array, not an archive of named arrays')
        with archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
            safetensors.SafetensorError) as exc:
        raise CheckpointError(f'{path}: cannot read it as a weight archive, the file is '
                              f'truncated or corrupt ({type(exc).__name__}: {exc})') from exc


def split_temperature(arrays: Mapping[str, np.ndarray]
                      ) -> tuple[dict[str, np.ndarray], Optional[float]]:
    """Drop the temperature scalar(s) of a text file and return it separately."""
    rest = {k: v for k, v in arrays.items() if k not in TEMPERATURE_KEYS}
    found = [float(arrays[k]) for k in TEMPERATURE_KEYS if k in arrays]
    return rest, (found[0] if found else None)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """Convert a NumPy array to a tensor, copying only read-only arrays."""
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Convert NumPy arrays to tensors."""
    return {key: to_tensor(value) for key, value in arrays.items()}


# --- Strict checks and variant inference -------------------------------------------------------

class Signature(NamedTuple):
    """What a state dict's shapes say about the model: width and number of blocks."""

    width: Optional[int]
    depth: int


_SIGNATURE_KEYS = {  # kind -> (key whose first dim is the width, regex counting blocks)
    'vision': ('norm.weight', r'blocks\.(\d+)\.'),
    'text': ('ln_final.weight', r'transformer\.resblocks\.(\d+)\.'),
    'dpt': ('dpt.reassemble.readout_projects.0.bias', r'dpt\.convs\.(\d+)\.'),
    'scenic_dpt': ('dpt/reassemble_blocks/readout_projects_0/bias', r'dpt/convs_(\d+)/'),
}


def signature(shapes: Mapping, kind: str) -> Signature:
    """Width and block count of a state dict of ``kind`` (vision, text, dpt, scenic_dpt)."""
    width_key, block_pattern = _SIGNATURE_KEYS[kind]
    width = shapes[width_key].shape[0] if width_key in shapes else None
    blocks = {m.group(1) for k in shapes if (m := re.match(block_pattern, k))}
    return Signature(width, len(blocks))


def infer_variant(shapes: Mapping, kind: str) -> Optional[str]:
    """Name of the variant whose sizes fit the state dict's shapes, or None."""
    sig = signature(shapes, kind)
    for cfg in (*VARIANTS.values(), TINY):
        expected = {'vision': (cfg.vision.embed_dim, cfg.vision.depth),
                    'text': (cfg.text.width, cfg.text.layers)}.get(kind, (cfg.vision.embed_dim, 4))
        if tuple(sig) == expected:
            return cfg.name
    return None


def mismatch_message(what: str, missing: list, unexpected: list, shapes: list,
                     variant: Optional[str], expected_variant: Optional[str] = None) -> str:
    parts = [f'{what} does not fit the model'
             + (f' ({expected_variant})' if expected_variant else '')]
    for label, items in (('missing keys', missing), ('unexpected keys', unexpected),
                         ('shape mismatches', shapes)):
        if items:
            more = f' ... (+{len(items) - 8} more)' if len(items) > 8 else ''
            parts.append(f'{label} ({len(items)}): {", ".join(map(str, items[:8]))}{more}')
    parts.append(f"the file's shapes point to variant {variant!r}" if variant else
                 "the file's shapes match no known variant")
    return '; '.join(parts)


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, kind: str,
                expected_variant: Optional[str] = None) -> None:
    """``load_state_dict(strict=True)`` after a check whose error names every problem.

    Args:
        module: the model part to fill.
        state: its state dict from a file.
        what: the file (and part) for the error message.
        kind: 'vision', 'text' or 'dpt' (for the variant inference).
        expected_variant: the variant the module was built for, named in the error.
    """
    own = module.state_dict()
    # Buffers the released files do not store (the depth bins), as the official loader does.
    state = {**{k: v for k, v in module.named_buffers() if k not in state}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f'{key} {tuple(state[key].shape)} != model {tuple(own[key].shape)}'
              for key in sorted(set(own) & set(state)) if state[key].shape != own[key].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(mismatch_message(what, missing, unexpected, shapes,
                                               infer_variant(state, kind), expected_variant))
    module.load_state_dict(state, strict=True)
