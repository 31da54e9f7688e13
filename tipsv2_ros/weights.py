# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The official TIPSv2 weight files: where they are published and where they are kept.

Names follow the ``google-deepmind/tips`` README and notebooks (GCS bucket ``tips_data``,
CC-BY-4.0) and the ``google/tipsv2-*`` Hugging Face repos (Apache-2.0). The download itself
(resumable, hash-checked) is ``tipsv2_ros.fetch``. Stdlib and the task registry only.
"""
import dataclasses
import os
import pathlib
from typing import Iterable, NamedTuple

from tipsv2_ros.tasks import REGISTRY

VARIANTS = ('b14', 'l14', 'so400m14', 'g14')
# The official DPT heads, by their names in the files ('segmentation' is the ADE20K head).
TASKS = tuple(spec.checkpoint_name for spec in REGISTRY.heads())
SOURCES = ('gcs', 'hf')
GCS_URL = 'https://storage.googleapis.com'
HF_URL = 'https://huggingface.co'
# The encoders of So400m/14 are tips_v2_oss_so14_* (pytorch/checkpoints/download_checkpoints.sh
# and the README); only its DPT heads (and the Scenic encoders) say so400m14.
_GCS_NAMES = {'b14': 'b14', 'l14': 'l14', 'so400m14': 'so14', 'g14': 'g14'}


class WeightsError(RuntimeError):
    """A download failed; the message names the URL and what to do."""


class MissingWeightsError(FileNotFoundError):
    """Weight files are not in the cache; the message says how to get them."""


class WeightPaths(NamedTuple):
    """Local files of one variant (one file holds both towers in a Hugging Face download)."""

    vision: pathlib.Path
    text: pathlib.Path
    tokenizer: pathlib.Path
    depth_head: pathlib.Path | None = None
    normals_head: pathlib.Path | None = None
    segmentation_head: pathlib.Path | None = None


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One official file."""

    name: str  # path inside the variant's cache folder
    url: str
    licence: str  # SPDX identifier
    roles: tuple[str, ...]  # the WeightPaths fields this file fills
    variant: str  # also the cache sub-folder


def default_cache_dir() -> pathlib.Path:
    """``$TIPSV2_CACHE``, else ``$XDG_CACHE_HOME/tipsv2_ros``, else ``~/.cache/tipsv2_ros``."""
    if os.environ.get('TIPSV2_CACHE'):
        return pathlib.Path(os.environ['TIPSV2_CACHE']).expanduser()
    return pathlib.Path(os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache',
                        'tipsv2_ros')


def variant_dir(variant: str, cache_dir: os.PathLike | str | None = None) -> pathlib.Path:
    """Return the folder of one variant's files, ``<cache_dir or default>/<variant>``."""
    return pathlib.Path(cache_dir or default_cache_dir()) / variant


def official_files(variant: str, source: str = 'gcs', tasks: Iterable[str] = TASKS, *,
                   base_url: str | None = None, revision: str = 'main') -> list[RemoteFile]:
    """Return the files a variant needs: vision, text, tokenizer and one DPT head per task.

    Args:
        variant: one of `VARIANTS`.
        source: ``'gcs'`` (official bucket, CC-BY-4.0) or ``'hf'`` (Hugging Face, Apache-2.0).
        tasks: subset of `TASKS` whose DPT heads are wanted.
        base_url: replaces the host (default ``$TIPSV2_WEIGHTS_BASE_URL``), e.g. for a mirror
            that keeps the ``/tips_data/...`` and ``/google/...`` paths.
        revision: Hugging Face branch or commit.
    """
    tasks = tuple(tasks)
    for value, allowed, what in ((variant, VARIANTS, 'variant'), (source, SOURCES, 'source'),
                                 *((task, TASKS, 'task') for task in tasks)):
        if value not in allowed:
            raise ValueError(f'unknown {what} {value!r}; expected one of {", ".join(allowed)}')
    base = base_url or os.environ.get('TIPSV2_WEIGHTS_BASE_URL')
    if source == 'gcs':
        root = (base or GCS_URL).rstrip('/') + '/tips_data'

        def gcs(roles, path):
            return RemoteFile(path.rsplit('/', 1)[-1], f'{root}/{path}', 'CC-BY-4.0', roles,
                              variant)

        npz = 'v2_0/checkpoints/pytorch/tips_v2_oss_{}_{}.npz'
        return [gcs((tower,), npz.format(_GCS_NAMES[variant], tower))
                for tower in ('vision', 'text')] + [
            gcs(('tokenizer',), 'v1_0/checkpoints/tokenizer.model')] + [
            gcs((f'{task}_head',), f'v2_0/checkpoints/scenic/tips_v2_{variant}_{task}_dpt.zip')
            for task in TASKS if task in tasks]
    root = (base or os.environ.get('HF_ENDPOINT') or HF_URL).rstrip('/')

    def hf(repo, filename, roles):
        url = f'{root}/google/{repo}/resolve/{revision}/{filename}'
        return RemoteFile(f'{repo}/{filename}', url, 'Apache-2.0', roles, variant)

    heads = tuple(f'{task}_head' for task in TASKS if task in tasks)
    # The heads' config.json says which activation follows the depth decoder (see
    # model.hf_checkpoint.hf_depth_activation); it is read from next to the weights.
    return [hf(f'tipsv2-{variant}', 'model.safetensors', ('vision', 'text')),
            hf(f'tipsv2-{variant}', 'tokenizer.model', ('tokenizer',))] + (
        [hf(f'tipsv2-{variant}-dpt', 'model.safetensors', heads),
         hf(f'tipsv2-{variant}-dpt', 'config.json', ())] if heads else [])


def resolve_weights(variant: str, cache_dir: os.PathLike | str | None = None,
                    tasks: Iterable[str] = TASKS, source: str | None = None) -> WeightPaths:
    """Find a downloaded variant: the GCS files, else the Hugging Face ones.

    Raises:
        MissingWeightsError: naming the missing files and the command that fetches them.
    """
    tasks, folder, missing, present = tuple(tasks), variant_dir(variant, cache_dir), {}, {}
    for src in (source,) if source else SOURCES:
        files = official_files(variant, src, tasks)
        missing[src] = [f.name for f in files if not (folder / f.name).is_file()]
        if not missing[src]:
            return WeightPaths(**{role: folder / f.name for f in files for role in f.roles})
        present[src] = len(files) - len(missing[src])
    src = max(present, key=present.get)  # the source begun with; GCS when none was
    raise MissingWeightsError(
        f'TIPSv2 {variant} weights missing from {folder}: {", ".join(missing[src])}; '
        f'fetch them with `tipsv2 download {variant} --source {src}` or copy them there by '
        'hand (README, "Weights")')
