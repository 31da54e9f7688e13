# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""A fourth dense head from one registry entry, with no other edit of the package.

Through the model, the torch backend, the pipeline and the node's topics; tests/extra_task.py
is the whole task.
"""
import json
import signal
import subprocess
import sys

import extra_task
import numpy as np
import pytest
import torch

from tipsv2_ros.model import TipsV2
from tipsv2_ros.model.random_weights import SMALL
from tipsv2_ros.runtime.backends.torch_backend import TorchBackend
from tipsv2_ros.runtime.frame.pipeline import Pipeline
from tipsv2_ros.tasks import REGISTRY

SIZE = (112, 112)


@pytest.fixture(scope='module')
def edges_file(tmp_path_factory):
    return extra_task.write_weights(tmp_path_factory.mktemp('edges') / 'edges.safetensors',
                                    SMALL)


@pytest.fixture
def registered():
    extra_task.register()
    try:
        yield extra_task.SPEC
    finally:
        REGISTRY.unregister(extra_task.SPEC.name)


def test_torch_backend_and_pipeline_run_the_extra_head(registered, tiny_weights, edges_file):
    assert 'edges' in REGISTRY.image_path()
    model = TipsV2.from_files(tiny_weights.vision, depth_head=tiny_weights.depth_head,
                              edges_head=edges_file)
    assert set(model.heads) == {'depth', 'edges'}
    backend = TorchBackend(model, SIZE, ['depth', 'edges'])
    pixels = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(0))
    outputs = backend.infer(pixels, frozenset({'edges'}))
    assert set(outputs) == {'edges'}
    with torch.no_grad():
        dense = model.vision.dense_features(pixels, model.config.dpt.intermediate_layers)
        expected = model.heads['edges'](dense.intermediates)
    torch.testing.assert_close(outputs['edges'], expected, rtol=1e-5, atol=1e-5)
    frame = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    result = Pipeline(backend, 0.01).run([frame], {'depth', 'edges'}, output='input')[0]
    assert set(result.arrays) == {'depth', 'edges'}
    assert result.edges.shape == (60, 80) and result.edges.dtype == np.float32


def test_the_registry_refuses_clashing_tasks(registered):
    with pytest.raises(ValueError, match='already registered'):
        REGISTRY.register(extra_task.SPEC)
    clash = extra_task.tasks.TaskSpec('edges2', extra_task.tasks.DENSE_HEAD, 'depth',
                                      ('edges2_head',))
    with pytest.raises(ValueError, match="'depth'"):
        REGISTRY.register(clash)


@pytest.mark.ros
def test_the_node_publishes_the_extra_head(ros, tiny_params, edges_file):
    from ros_helpers import Client

    from tipsv2_ros.ros import conversions
    params = {**tiny_params, 'model.edges_head': str(edges_file),
              'tasks': ['depth', 'edges']}
    command = [sys.executable, extra_task.__file__, '--ros-args', '-r', '__ns:=/textra']
    for name, value in params.items():
        command += ['-p', f'{name}:={json.dumps(value)}']
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    client = Client('textra')
    try:
        assert client.wait_for_node(60), _stop(proc)
        client.listen('edges/image')
        sent, got = client.exchange(np.zeros((60, 80, 3), np.uint8), ['edges/image'])
        edges = conversions.image_to_array(got['edges/image'])
        assert got['edges/image'].encoding == '32FC1' and edges.shape == (64, 64)
        assert got['edges/image'].header.stamp == sent.header.stamp
        assert np.isfinite(edges).all()
        assert client.spin_until(lambda: (client.status or {}).get(
            'head_runs', {}).get('edges', 0) >= 1, 10)
        assert client.status['head_runs']['depth'] == 0  # nobody listens to depth
    finally:
        client.destroy_node()
        _stop(proc)


def _stop(proc) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]
