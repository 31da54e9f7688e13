# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The node as a user runs it (`tipsv2 node`, its own process) over real DDS."""
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from ros_helpers import camera_info, Client, NodeProcess, running_node
from sensor_msgs.msg import CameraInfo

from tipsv2_ros.ros import conversions

pytestmark = pytest.mark.ros

LABELS = ['floor', 'wall', 'person']
OUTPUTS = ['depth/image', 'depth/colored', 'normals/image', 'normals/colored',
           'segmentation/labels', 'segmentation/confidence', 'segmentation/colored']


def _frame(height=60, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def running(ros, tiny_params):
    """One node for the module: ns /tnode, three labels, 112x112 input."""
    with running_node({**tiny_params, 'labels': LABELS}, 'tnode') as pair:
        yield pair


def test_every_output_has_the_input_header_encoding_and_range(running):
    node, client = running
    for topic in OUTPUTS:
        client.listen(topic)
    client.listen('depth/camera_info', CameraInfo)
    sent, got = client.exchange(_frame(), OUTPUTS + ['depth/camera_info'],
                                frame_id='cam_optical', info=camera_info(80, 60))
    assert all(msg.header.stamp == sent.header.stamp for msg in got.values())
    encodings = {'depth/image': '32FC1', 'normals/image': '32FC3', 'segmentation/labels': 'mono8',
                 'segmentation/confidence': 'mono8', 'depth/colored': 'rgb8',
                 'normals/colored': 'rgb8', 'segmentation/colored': 'rgb8'}
    for topic, msg in got.items():
        assert msg.header.frame_id == 'cam_optical', topic
        if topic in encodings:
            assert msg.encoding == encodings[topic], topic
            assert (msg.height, msg.width) == (64, 64), topic  # 8 px per 14-px patch at 112
    depth = conversions.image_to_array(got['depth/image'])
    assert np.isfinite(depth).all() and (depth > 0).all() and (depth <= 10.0).all()
    normals = conversions.image_to_array(got['normals/image'])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    labels = conversions.image_to_array(got['segmentation/labels'])
    assert set(np.unique(labels)) <= set(range(len(LABELS))) | {255}
    confidence = conversions.image_to_array(got['segmentation/confidence'])
    # The winner's probability is at least 1/C.
    assert confidence.min() >= int(255 / len(LABELS)) - 1


def test_camera_info_is_scaled_to_the_output(running):
    node, client = running
    client.listen('depth/image')
    client.listen('depth/camera_info', CameraInfo)
    info = camera_info(80, 60, fx=100.0, fy=90.0, cx=39.5, cy=29.5)
    _, got = client.exchange(_frame(), ['depth/camera_info'], info=info)
    scaled = got['depth/camera_info']
    assert (scaled.width, scaled.height) == (64, 64)
    sx, sy = 64 / 80, 64 / 60
    np.testing.assert_allclose(scaled.k, [100 * sx, 0, 40 * sx - 0.5, 0, 90 * sy, 30 * sy - 0.5,
                                          0, 0, 1], rtol=1e-6)


def test_label_info_is_latched_for_late_subscribers(running):
    node, client = running
    client.listen_labels()
    assert client.spin_until(lambda: client.received['segmentation/label_info'], 10)
    info = client.received['segmentation/label_info'][-1]
    assert list(info.class_names) == LABELS and list(info.class_ids) == [0, 1, 2]
    assert len(info.templates) == 9


@pytest.mark.parametrize('labels, reason', [
    ([], 'empty'), (['floor', ''], 'empty'), (['door', 'Door'], 'duplicate'),
    ([f'l{i}' for i in range(256)], '255'), (['x' * 10_000], 'characters'),
    (['tab\tle'], 'control')])
def test_bad_set_labels_requests_keep_the_labels(running, labels, reason):
    node, client = running
    response = client.call_set_labels(labels)
    assert not response.success
    assert reason in response.message
    assert list(response.class_names) == LABELS


def test_set_labels_swaps_and_republishes(running):
    node, client = running
    client.listen_labels()
    client.listen('segmentation/labels')
    client.spin_until(lambda: client.received['segmentation/label_info'], 10)
    before = client.received['segmentation/label_info'][-1].generation
    try:
        response = client.call_set_labels(['glass door', 'café table'])
        assert response.success, response.message
        assert list(response.class_names) == ['glass door', 'café table']
        assert client.spin_until(lambda: client.received['segmentation/label_info'][-1]
                                 .generation > before, 10)
        assert list(client.received['segmentation/label_info'][-1].class_names) == \
            ['glass door', 'café table']
        _, got = client.exchange(_frame(seed=3), ['segmentation/labels'])
        labels = conversions.image_to_array(got['segmentation/labels'])
        assert set(np.unique(labels)) <= {0, 1, 255}
    finally:
        assert client.call_set_labels(LABELS).success


def test_heads_run_only_for_subscribed_outputs(ros, tiny_params):
    with NodeProcess({**tiny_params, 'labels': LABELS}, 'tlazy') as node:
        client = Client('tlazy', name='lazy_client')
        try:
            assert client.wait_for_node(60), node.output
            client.spin_until(lambda: client.status is not None, 5)
            client.send(_frame())  # nobody listens: no inference at all
            assert client.spin_until(
                lambda: client.status['frames_skipped_no_subscribers'] >= 1, 10)
            assert client.status['head_runs'] == {'depth': 0, 'normals': 0, 'segmentation': 0}
            client.listen('depth/image')
            client.exchange(_frame(seed=1), ['depth/image'])
            assert client.spin_until(lambda: client.status['head_runs']['depth'] >= 1, 5)
            assert client.status['head_runs']['normals'] == 0
            assert client.status['head_runs']['segmentation'] == 0
        finally:
            client.destroy_node()


def _depth_of(client, frame, encoding='rgb8'):
    _, got = client.exchange(frame, ['depth/image'], encoding)
    return conversions.image_to_array(got['depth/image'])


@pytest.mark.parametrize('encoding', ['bgr8', 'rgba8', 'bgra8', 'mono8'])
def test_input_encodings(running, encoding):
    """Each encoding reaches the model as the RGB frame it shows: same depth as rgb8."""
    node, client = running
    client.listen('depth/image')
    rgb = np.random.default_rng(5).integers(0, 255, (30, 44, 3), dtype=np.uint8)
    alpha = np.full((30, 44, 1), 200, np.uint8)
    if encoding == 'mono8':
        sent, rgb = rgb[..., 0], np.repeat(rgb[..., :1], 3, axis=-1)
    else:
        sent = {'bgr8': rgb[..., ::-1], 'rgba8': np.concatenate([rgb, alpha], axis=-1),
                'bgra8': np.concatenate([rgb[..., ::-1], alpha], axis=-1)}[encoding]
    expected = _depth_of(client, rgb)
    np.testing.assert_array_equal(_depth_of(client, np.ascontiguousarray(sent), encoding),
                                  expected)
    # The comparison sees colour order: the same pixels with red and blue swapped differ.
    swapped = _depth_of(client, np.ascontiguousarray(rgb[..., ::-1]))
    assert encoding == 'mono8' or not np.array_equal(swapped, expected)


def test_unsupported_encoding_is_reported_and_the_node_keeps_running(running):
    node, client = running
    client.listen('depth/image')
    client.spin_until(lambda: client.status is not None, 5)
    bad = conversions.array_to_image(np.zeros((8, 8), np.uint16), '16UC1', None)
    bad.encoding = 'bayer_unknown16'
    client.image_pub.publish(bad)
    assert client.spin_until(lambda: client.status['bad_frames'] >= 1, 10)
    sent, got = client.exchange(_frame(seed=7), ['depth/image'])
    depth = conversions.image_to_array(got['depth/image'])
    assert got['depth/image'].header.stamp == sent.header.stamp
    assert depth.shape == (64, 64) and np.isfinite(depth).all() and (depth > 0).all()


def _set_param(client, name, value):
    service = client.create_client(SetParameters, f'{client.ns}/tipsv2_perception/set_parameters')
    assert service.wait_for_service(10)
    if isinstance(value, float):
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    else:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    future = service.call_async(SetParameters.Request(parameters=[Parameter(name=name,
                                                                            value=pv)]))
    assert client.spin_until(future.done, 10)
    return future.result().results[0]


def test_runtime_parameters_are_validated(running):
    node, client = running
    assert not _set_param(client, 'segmentation.threshold', 1.5).successful
    assert not _set_param(client, 'output_resolution', 'huge').successful
    refused = _set_param(client, 'backend', 'torch')
    assert not refused.successful and 'read-only' in refused.reason
    assert _set_param(client, 'segmentation.threshold', 0.99).successful
    client.listen('segmentation/labels')
    _, got = client.exchange(_frame(seed=9), ['segmentation/labels'])
    labels = conversions.image_to_array(got['segmentation/labels'])
    assert (labels == 255).all()  # three random labels never reach 99 %
    assert _set_param(client, 'segmentation.threshold', 0.0).successful


def test_output_at_input_resolution_and_several_cameras(ros, tiny_params):
    params = {**tiny_params, 'cameras': ['front', 'rear'], 'output_resolution': 'input'}
    with NodeProcess(params, 'tmulti') as node:
        clients = [Client(f'tmulti/{cam}', name=f'client_{cam}') for cam in ('front', 'rear')]
        try:
            for client in clients:
                assert client.spin_until(
                    lambda c=client: c.image_pub.get_subscription_count() > 0, 60), node.output
                client.listen('depth/image')
            for i, client in enumerate(clients):
                _, got = client.exchange(_frame(40 + 10 * i, 50), ['depth/image'])
                assert (got['depth/image'].height, got['depth/image'].width) == (40 + 10 * i, 50)
        finally:
            for client in clients:
                client.destroy_node()


def test_sliding_window_segmentation(ros, tiny_params):
    """segmentation.mode slide: labels from windows, heads once, at the camera resolution."""
    params = {**tiny_params, 'labels': LABELS, 'segmentation.mode': 'slide',
              'segmentation.window': 56, 'segmentation.stride': 28,
              'output_resolution': 'input'}
    with NodeProcess(params, 'tslide') as node:
        client = Client('tslide', name='slide_client')
        try:
            assert client.wait_for_node(60), node.stop() or node.output
            for topic in ('segmentation/labels', 'segmentation/confidence', 'depth/image'):
                client.listen(topic)
            _, got = client.exchange(_frame(60, 90), ['segmentation/labels', 'depth/image'])
            labels = conversions.image_to_array(got['segmentation/labels'])
            assert labels.shape == (60, 90) and labels.max() < len(LABELS)
            assert got['depth/image'].height == 60
        finally:
            client.destroy_node()
        node.stop()
    assert 'sliding windows 56 px every 28 px (short side to the window)' in node.output


def test_ade20k_head_is_published_lazily(ros, tiny_params, tiny_weights):
    """Tasks with ade20k: its topics and latched class list, run only while subscribed."""
    from ros_helpers import LATCHED
    from tipsv2_ros.msg import LabelInfo
    params = {**tiny_params, 'labels': LABELS,
              'model.segmentation_head': str(tiny_weights.segmentation_head),
              'tasks': ['depth', 'normals', 'segmentation', 'ade20k']}
    with NodeProcess(params, 'tade') as node:
        client = Client('tade', name='ade_client')
        try:
            assert client.wait_for_node(60), node.stop() or node.output
            client.listen('ade20k/label_info', LabelInfo, LATCHED)
            assert client.spin_until(lambda: client.received['ade20k/label_info'], 10)
            info = client.received['ade20k/label_info'][-1]
            assert list(info.class_names) == [f'class {i}' for i in range(7)]  # tiny head
            client.spin_until(lambda: client.status is not None, 5)
            client.listen('ade20k/labels')
            client.listen('ade20k/colored')
            _, got = client.exchange(_frame(), ['ade20k/labels', 'ade20k/colored'])
            labels = conversions.image_to_array(got['ade20k/labels'])
            assert got['ade20k/labels'].encoding == 'mono8' and labels.shape == (64, 64)
            assert labels.max() < 7
            assert client.spin_until(lambda: client.status['head_runs']['ade20k'] >= 1, 5)
            assert client.status['head_runs']['segmentation'] == 0
            assert client.status['head_runs']['depth'] == 0
        finally:
            client.destroy_node()


def test_sigint_exits_cleanly(ros, tiny_params):
    node = NodeProcess(tiny_params, 'tstop')
    client = Client('tstop', name='stop_client')
    try:
        assert client.wait_for_node(60), node.output
    finally:
        client.destroy_node()
    assert node.stop() == 0, node.output
    assert 'Traceback' not in node.output
