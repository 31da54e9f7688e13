# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Per-task ``max_rate``: the scheduler, and the node skipping tasks (and frames) over DDS."""
import time

import numpy as np
import pytest

from tipsv2_ros.runtime.frame.task_rates import TaskRates

ALL = frozenset({'depth', 'normals', 'segmentation'})


def test_zero_means_every_frame():
    rates = TaskRates()
    for step in range(5):
        now = step * 0.01
        assert rates.due(ALL, {}, now) == ALL
        rates.ran(ALL, {'depth': 0.0}, now)


def test_a_limited_task_runs_at_its_rate_and_others_every_frame():
    rates, limits = TaskRates(), {'segmentation': 2.0}
    runs = dict.fromkeys(ALL, 0)
    for step in range(300):  # a 30 Hz camera for 10 s
        now = step / 30
        due = rates.due(ALL, limits, now)
        rates.ran(due, limits, now)
        for task in due:
            runs[task] += 1
    assert runs['depth'] == runs['normals'] == 300
    assert runs['segmentation'] == 20  # 2 Hz for 10 s, not one run per 0.5 s + a frame


def test_a_late_task_does_not_burst_to_catch_up():
    rates, limits = TaskRates(), {'normals': 1.0}
    rates.ran({'normals'}, limits, 0.0)
    assert rates.due({'normals'}, limits, 0.5) == frozenset()
    assert rates.due({'normals'}, limits, 10.0) == {'normals'}
    rates.ran({'normals'}, limits, 10.0)
    assert rates.due({'normals'}, limits, 10.5) == frozenset()  # one run, then the rate


def test_only_wanted_tasks_are_due():
    assert TaskRates().due({'depth'}, {'normals': 1.0}, 0.0) == {'depth'}


@pytest.mark.ros
def test_node_runs_segmentation_at_its_max_rate_and_depth_every_frame(ros, tiny_params):
    from ros_helpers import Client, NodeProcess
    params = {**tiny_params, 'labels': ['floor', 'wall'], 'segmentation.max_rate': 0.25}
    with NodeProcess(params, 'trates') as node:
        client = Client('trates', name='rates_client')
        try:
            assert client.wait_for_node(60), node.output
            client.listen('depth/image')
            client.listen('segmentation/labels')
            frame = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
            client.exchange(frame, ['depth/image', 'segmentation/labels'])
            client.clear()
            end = time.monotonic() + 3.0
            while time.monotonic() < end:  # 3 s of frames at ~10 Hz: segmentation is not due
                client.send(frame)
                client.spin_until(lambda: False, 0.1)
            assert client.spin_until(lambda: len(client.received['depth/image']) >= 3, 10)
            assert client.received['segmentation/labels'] == []
            assert client.spin_until(lambda: client.status is not None, 5)
            runs = client.status['head_runs']
            assert runs['depth'] > runs['segmentation'] >= 1
            # Depth alone is unlimited: nothing was skipped for its rate.
            assert client.status['frames_skipped_rate'] == 0
        finally:
            client.destroy_node()


@pytest.mark.ros
def test_frames_with_no_task_due_are_skipped_before_inference(ros, tiny_params):
    from ros_helpers import Client, NodeProcess
    params = {**tiny_params, 'labels': ['floor'], 'depth.max_rate': 0.2}
    with NodeProcess(params, 'tskip') as node:
        client = Client('tskip', name='skip_client')
        try:
            assert client.wait_for_node(60), node.output
            client.listen('depth/image')
            frame = np.zeros((60, 80, 3), np.uint8)
            client.exchange(frame, ['depth/image'])
            for _ in range(10):
                client.send(frame)
                client.spin_until(lambda: False, 0.1)
            assert client.spin_until(
                lambda: client.status and client.status['frames_skipped_rate'] >= 3, 10)
            assert client.status['head_runs']['depth'] == 1
        finally:
            client.destroy_node()


@pytest.mark.ros
def test_a_task_rate_set_at_runtime_takes_effect(ros, tiny_params):
    """``<task>.max_rate`` (declared from the task registry) is dynamic: set on a running node."""
    from hardening_helpers import set_params
    from ros_helpers import running_node
    with running_node({**tiny_params, 'labels': ['floor']}, 'tdynrate',
                      name='dynrate_client') as (node, client):
        client.listen('depth/image')
        frame = np.zeros((60, 80, 3), np.uint8)
        client.exchange(frame, ['depth/image'])
        assert set_params(client, {'depth.max_rate': 0.05})[0].successful
        client.exchange(frame, ['depth/image'])  # due: the first depth since the change
        for _ in range(10):
            client.send(frame)
            client.spin_until(lambda: False, 0.1)
        assert client.spin_until(
            lambda: client.status and client.status['frames_skipped_rate'] >= 3, 10)
