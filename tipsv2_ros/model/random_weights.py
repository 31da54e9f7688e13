# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Random weights written in the released file formats, for tests, the offline demo and benchmarks.

Mirrors the layouts read by tips/pytorch/run_*_inference.py@4db271d (vision/text ``.npz``)
and tips/pytorch/decoders.py@4db271d (Scenic ``*_dpt.zip``), plus a small SentencePiece
model trained on the spot. The outputs are meaningless; the files load exactly like the real
ones, so every code path downstream of loading is exercised.
"""
import io
import os
import pathlib
from typing import NamedTuple, Union
import zipfile

import numpy as np
import sentencepiece
import torch

from tipsv2_ros.model import config_file, dpt_checkpoint
from tipsv2_ros.model.config import ModelConfig, resolve_config, TINY
from tipsv2_ros.model.text import TextEncoder
from tipsv2_ros.model.vision import VisionTransformer
from tipsv2_ros.model.zero_shot import prompts, TEMPLATES
from tipsv2_ros.tasks import REGISTRY

# The config of the offline demo and the node tests: the golden tiny model (loads in ~0.1 s).
SMALL = TINY

# Text to train the tokenizer on: the prompt templates around everyday labels.
_CORPUS_LABELS = ('cat', 'dog', 'floor', 'wall', 'person', 'chair', 'table', 'door', 'window',
                  'car', 'road', 'tree', 'sky', 'grass', 'building', 'ceiling', 'bed', 'sofa',
                  'lamp', 'box', 'shelf', 'plant', 'water', 'robot', 'cup', 'bottle')


class CheckpointPaths(NamedTuple):
    """The written files; field names as ``tipsv2_ros.weights.WeightPaths``."""

    vision: pathlib.Path
    text: pathlib.Path
    tokenizer: pathlib.Path
    depth_head: pathlib.Path
    normals_head: pathlib.Path
    segmentation_head: pathlib.Path


def _random_state(shapes: dict[str, torch.Size], rng: np.random.Generator
                  ) -> dict[str, np.ndarray]:
    """Plausible values per parameter kind: unit norms and scales, zero biases, N(0, 0.02)."""
    state = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        parent = key.rsplit('.', 2)[-2] if '.' in key else ''
        is_norm = 'norm' in parent or parent.startswith('ln_')
        if key.endswith('.gamma') or (key.endswith('.weight') and is_norm):
            state[key] = np.ones(shape, np.float32)
        elif key.endswith('bias'):
            state[key] = np.zeros(shape, np.float32)
        else:
            state[key] = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
    return state


def _shapes(module: torch.nn.Module) -> dict[str, torch.Size]:
    return {key: value.shape for key, value in module.state_dict().items()}


def _meta(build, *args) -> torch.nn.Module:
    with torch.device('meta'):  # shapes only, no memory
        return build(*args)


def train_tokenizer(vocab_size: int = 200) -> bytes:
    """Train a tiny unigram SentencePiece model with the released conventions (pad 0, unk 1)."""
    lines = prompts(_CORPUS_LABELS, TEMPLATES)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
        model_type='unigram', pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        hard_vocab_limit=False, character_coverage=1.0, num_threads=1, minloglevel=2)
    return model.getvalue()


def write_random_checkpoint(out_dir: Union[str, os.PathLike],
                            config: Union[str, ModelConfig] = 'tiny',
                            seed: int = 0) -> CheckpointPaths:
    """Write random vision/text ``.npz``, the three Scenic DPT zips, a tokenizer and config.json.

    Args:
        out_dir: the directory to write to (created if missing).
        config: a variant name ('tiny', 'b14', ...) or a ``ModelConfig``.
        seed: the NumPy seed; the same seed writes the same files.

    Returns:
        The paths, ready for ``TipsV2.from_files`` (``._asdict()`` gives a dict).
    """
    cfg = resolve_config(config)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {part: out / f'{part}.npz' for part in ('vision', 'text')}
    vision = _random_state(_shapes(_meta(VisionTransformer, cfg.vision)), rng)
    np.savez(paths['vision'], **vision)
    text = _random_state(_shapes(_meta(TextEncoder, cfg.text)), rng)
    text['temperature'] = np.float32(cfg.temperature)
    np.savez(paths['text'], **text)
    for spec in REGISTRY.heads():  # the official heads, as the Scenic zips they ship in
        if spec.checkpoint_name not in dpt_checkpoint.HEAD_NAMES.values():
            continue
        task, role = spec.checkpoint_name, spec.files[0]
        shapes = _shapes(_meta(spec.head_class(), cfg.vision.embed_dim, cfg.dpt))
        shapes.pop('bin_centers', None)  # not stored in the released files
        state = {k: torch.from_numpy(v) for k, v in _random_state(shapes, rng).items()}
        paths[role] = out / f'{task}_dpt.zip'
        _write_scenic_zip(paths[role], dpt_checkpoint.torch_to_scenic(state, task))
    paths['tokenizer'] = out / 'tokenizer.model'
    paths['tokenizer'].write_bytes(train_tokenizer(min(200, cfg.text.vocab_size)))
    config_file.write_config(cfg, out / config_file.CONFIG_FILE)  # the files describe themselves
    return CheckpointPaths(**paths)


def _write_scenic_zip(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a zip of ``.npy`` files named by Flax path, as the released ``*_dpt.zip``."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, value)
            archive.writestr(f'{key}.npy', buffer.getvalue())
