# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""A fourth dense head, added the way docs/architecture.md says: its module and one entry.

``EdgesHead`` (a DPT head with one output channel) and ``SPEC``, its registry entry, are all
this task adds; ``write_weights`` stores a random head in the Hugging Face layout. Run as a
script, this module registers the task and runs the perception node (``lifecycle.main``)
with the remaining arguments, as a plugin would.
"""
import pathlib
import sys

import torch

from tipsv2_ros import tasks
from tipsv2_ros.model.dpt import DenseHead


class EdgesHead(DenseHead):
    """An edge-strength map, (B, 1, H', W')."""

    def __init__(self, embed_dim, cfg) -> None:
        super().__init__(1, embed_dim, cfg)


SPEC = tasks.TaskSpec(
    'edges', tasks.DENSE_HEAD, 'edges', ('edges_head',), EdgesHead, checkpoint_name='edges',
    channels=1, arrays=('edges',), resize='bilinear',
    topics=(tasks.Topic('edges/image', 'edges', '32FC1'),),
    metric='relative_error', bound=0.01, description='edge strength')


def register() -> None:
    """Add the task to the registry, once."""
    if SPEC.name not in tasks.REGISTRY:
        tasks.register(SPEC)


def write_weights(path: pathlib.Path, config, seed: int = 0) -> pathlib.Path:
    """Write a random EdgesHead as an HF safetensors file (``edges_head.`` prefix)."""
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    head = EdgesHead(config.vision.embed_dim, config.dpt)
    state = {}
    for key, value in head.state_dict().items():
        part, _, rest = key.partition('.')
        state[f'edges_head.{rest}' if part == 'dpt' else f'edges_head.edges_head.{rest}'] = (
            value.contiguous())
    save_file(state, str(path))
    return path


if __name__ == '__main__':
    register()
    from tipsv2_ros.ros import lifecycle
    sys.exit(lifecycle.main(sys.argv))
