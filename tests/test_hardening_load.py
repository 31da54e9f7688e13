# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Overload, label changes under load and a short soak, over real DDS.

The module's node runs the tiny model at a 224x224 input: 30-300 ms per frame on a 2-core
machine, so a 100 Hz camera overloads it for real. The latest frame must win, nothing may
queue, outputs must stay in order.
"""
import time

from hardening_helpers import frame, LABELS, LoggedNode
import numpy as np
import pytest
import rclpy
from ros_helpers import Client, LATCHED, stamp_ns
from sensor_msgs.msg import Image

from tipsv2_ros.model.zero_shot import TEMPLATES
from tipsv2_ros.msg import LabelInfo
from tipsv2_ros.ros import conversions, processes
from tipsv2_ros.ros.params import runtime_config
from tipsv2_ros.runtime import startup
from tipsv2_ros.srv import SetLabels

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SET_A = ['floor', 'wall']
SET_B = ['sky', 'person', 'tree', 'car', 'chair']
INPUT_SIZE = 224


@pytest.fixture(scope='module')
def running(ros, tiny_params):
    params = {**tiny_params, 'labels': LABELS, 'model.input_size': INPUT_SIZE}
    with LoggedNode(params, 'hload') as node:
        client = Client('hload', name='hload_client')
        try:
            assert client.wait_for_node(60), node.output
            assert client.spin_until(lambda: client.status is not None, 10)
            yield node, client
        finally:
            client.destroy_node()


def _stream(client, seconds, rate, on_tick=None, seeds=1):
    """Publish frames at ``rate`` Hz for ``seconds`` while spinning; return {stamp: seed}."""
    frames = [frame(seed=s) for s in range(seeds)]
    sent, period = {}, 1.0 / rate
    start = next_time = time.monotonic()
    while time.monotonic() - start < seconds:
        seed = len(sent) % seeds
        sent[stamp_ns(client.send(frames[seed]))] = seed
        if on_tick is not None:
            on_tick(len(sent))
        next_time += period
        while True:  # spin until the next frame is due (at least once)
            rclpy.spin_once(client, timeout_sec=max(0.0, next_time - time.monotonic()))
            if time.monotonic() >= next_time:
                break
    return sent


def test_burst_far_faster_than_inference(running):
    node, client = running
    client.listen('depth/image')
    client.exchange(frame(), ['depth/image'])
    assert client.spin_until(lambda: client.status['frames_processed'] >= 1, 10)
    before = dict(client.status)
    image = frame(seed=1)
    for _ in range(300):  # as fast as Python publishes: thousands per second
        last = client.send(image)
    # Latest frame wins: the last frame sent is processed, most of the others never are
    # (overwritten in the input QoS history, depth 1, or in the node's one-frame slot).
    assert client.spin_until(lambda: any(stamp_ns(m) == stamp_ns(last)
                                         for m in client.received['depth/image']), 20)
    client.spin_until(lambda: False, 1.5)  # the next status
    after = client.status
    assert after['frames_processed'] - before['frames_processed'] < 100, (before, after)
    assert after['frames_received'] - before['frames_received'] <= 300
    assert node.alive()
    client.exchange(frame(seed=2), ['depth/image'])


def test_overload_latest_frame_wins_in_order_with_bounded_latency(running):
    node, client = running
    client.clear()
    arrivals = []
    client.create_subscription(Image, '/hload/depth/image',
                               lambda msg: arrivals.append((stamp_ns(msg), time.time_ns())), 10)
    client.listen('normals/image')
    client.exchange(frame(), ['normals/image'])
    _stream(client, 2.0, 100)  # warm-up at full rate
    figures0, status0 = processes.figures(node.proc.pid), dict(client.status)
    arrivals.clear()
    sent = _stream(client, 8.0, 100)
    figures1, status1 = processes.figures(node.proc.pid), dict(client.status)
    client.spin_until(lambda: False, 1.5)  # the outputs of the last frames
    stamps = [s for s, _ in arrivals]
    latency = np.array([(t - s) / 1e9 for s, t in arrivals])
    processed = status1['frames_processed'] - status0['frames_processed']
    dropped = status1['frames_dropped'] - status0['frames_dropped']
    print(f'overload: sent {len(sent)} in 8 s ({len(sent) / 8:.0f} Hz), processed '
          f'{processed}, dropped {dropped}, outputs {len(stamps)}, latency p50 '
          f'{np.median(latency) * 1e3:.0f} ms max {latency.max() * 1e3:.0f} ms, '
          f'{figures0} -> {figures1}')
    assert len(sent) > 8 * 40  # a camera far faster than the node
    # (The 1 Hz status lags by up to a second: the counts are approximate. Frames are also
    # dropped before the node sees them, in the input QoS history of depth 1.)
    assert len(stamps) >= 5 and processed < 0.7 * len(sent) and dropped > 0
    assert all(b > a for a, b in zip(stamps, stamps[1:])), 'outputs reordered'
    # Latest frame wins: latency is a frame or two of inference, and it does not grow.
    fifth = max(1, len(latency) // 5)
    assert np.median(latency[-fifth:]) < np.median(latency[:fifth]) + 1.0, latency
    assert latency.max() < 5.0, latency
    # Memory: a guard against gross growth only (allocator arenas still settle in the first
    # seconds at 100 Hz on a loaded CI machine: +42 MB was seen once); the soak test below
    # is the leak check, over 2,000 frames after a proper warm-up.
    assert figures1['VmRSS'] - figures0['VmRSS'] < 96 * 1024, (figures0, figures1)
    assert figures1['Threads'] == figures0['Threads'] and figures1['fds'] == figures0['fds']


def test_label_changes_under_load_never_mix_label_sets(running, tiny_params):
    node, client = running
    events = []  # (source timestamp, kind, message): publication order on the node's side
    client.create_subscription(
        LabelInfo, '/hload/segmentation/label_info',
        lambda msg, info: events.append((info['source_timestamp'], 0, msg)), LATCHED)
    client.create_subscription(
        Image, '/hload/segmentation/labels',
        lambda msg, info: events.append((info['source_timestamp'], 1, msg)), 50)
    client.listen('segmentation/labels')
    client.exchange(frame(), ['segmentation/labels'])
    calls = []

    def change_labels(count):
        if count % 10 == 0 and (not calls or calls[-1].done()):
            calls.append(client.set_labels.call_async(SetLabels.Request(
                labels=SET_A if len(calls) % 2 == 0 else SET_B)))

    sent = _stream(client, 12.0, 30, change_labels, seeds=3)
    assert client.spin_until(lambda: all(c.done() for c in calls), 30)
    client.spin_until(lambda: False, 1.0)
    assert len(calls) >= 6 and all(c.result().success for c in calls)
    expected = _expected_masks(tiny_params, 3)
    current, checked, sizes = None, 0, set()
    for _, kind, msg in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            current = list(msg.class_names)
            continue
        stamp = stamp_ns(msg)
        if stamp not in sent or current not in (SET_A, SET_B):
            continue  # the warm-up frame, under the module's own labels
        mask = conversions.image_to_array(msg)
        assert mask.max() < len(current), f'mask value {mask.max()} under labels {current}'
        # The mask is the one of the announced label set, not the other one.
        agree = (mask == expected[tuple(current)][sent[stamp]]).mean()
        assert agree > 0.99, f'only {agree:.1%} of the mask matches labels {current}'
        checked, sizes = checked + 1, sizes | {len(current)}
    print(f'label changes under load: {len(calls)} set_labels calls, {checked} masks checked')
    assert checked >= 10 and sizes == {2, 5}, (checked, sizes)
    client.call_set_labels(LABELS)


def _expected_masks(tiny_params, seeds):
    """Compute each seed's mask under SET_A and SET_B in this process, with the same model."""
    runtime = startup.build(runtime_config({**tiny_params, 'device': 'cpu',
                                            'model.input_size': INPUT_SIZE}),
                            log=lambda text: None)
    try:
        expected = {}
        for names in (SET_A, SET_B):
            label_set = runtime.labels.build(names, TEMPLATES)
            results = runtime.pipeline.run([frame(seed=s) for s in range(seeds)],
                                           frozenset({'segmentation'}), label_set)
            expected[tuple(names)] = [r.labels for r in results]
        different = [(a != b).mean() for a, b in zip(*expected.values())]
        assert min(different) > 0.05, f'the two label sets give near-equal masks: {different}'
        return expected
    finally:
        runtime.close()


def test_soak_2000_frames_memory_threads_and_fds_stay_flat(ros, tiny_params):
    """2,000 frames at 100 Hz through a fresh node (the 10,000-frame run: tools/soak.py)."""
    with LoggedNode({**tiny_params, 'labels': LABELS}, 'hsoak') as node:
        client = Client('hsoak', name='hsoak_client')
        try:
            assert client.wait_for_node(60), node.output
            for topic in ('segmentation/labels', 'depth/image'):
                client.listen(topic)
            client.exchange(frame(), ['segmentation/labels', 'depth/image'])
            figures = []
            sent = _stream(client, 20.0, 100, lambda n: n % 300 == 0 and figures.append(
                processes.figures(node.proc.pid)), seeds=4)
            client.spin_until(lambda: False, 1.0)
            figures.append(processes.figures(node.proc.pid))
            status = client.status
        finally:
            client.destroy_node()
    print(f'soak: sent {len(sent)}, node status {status}, figures {figures}')
    assert len(sent) >= 1500 and status['frames_processed'] >= 20
    warm = figures[1]  # after 600 frames
    assert figures[-1]['VmRSS'] - warm['VmRSS'] < 20 * 1024, figures
    assert figures[-1]['Threads'] == warm['Threads'] and figures[-1]['fds'] == warm['fds']
    assert status['errors'] == 0 and node.proc.returncode == 0
