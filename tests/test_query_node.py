# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The query service and the semantic point cloud of a running node, over real DDS.

One node (ns /tquery, three labels, depth/points on) for the module. The cloud is decoded
with sensor_msgs_py's read_points where it is importable, else from its own PointField
table (tests/cloud_reader.py), and compared with depth_image_proc's point_cloud_xyz formula
computed here from the node's own depth/image and depth/camera_info.
"""
import threading
import time

from cloud_reader import read_cloud, unpack_rgb
from hardening_helpers import get_params, LoggedNode
import numpy as np
from PIL import Image as PILImage
import pytest
import rclpy
from ros_helpers import camera_info, Client, LATCHED, stamp_ns
from sensor_msgs.msg import CameraInfo, PointCloud2

from tipsv2_ros.ros import conversions
from tipsv2_ros.srv import Query

pytestmark = pytest.mark.ros

LABELS = ['floor', 'wall', 'person']
SIZE = (64, 64)  # the decoder size at the 112x112 input


def _frame(height=60, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _rectified_info(width=80, height=60):
    """Return a camera_info whose P differs from K, as a rectified or stereo camera's."""
    info = camera_info(width, height, fx=300.0, fy=310.0, cx=41.0, cy=28.0)
    info.p = [240.0, 0.0, 37.5, 0.0, 0.0, 240.0, 31.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class QueryClient(Client):
    def __init__(self):
        super().__init__('tquery', name='tquery_client')
        self.query = self.create_client(Query, f'{self.ns}/query')

    def call_query(self, phrases, templates=(), camera='', timeout=60.0):
        future = self.query.call_async(Query.Request(phrases=list(phrases),
                                                     templates=list(templates), camera=camera))
        assert self.spin_until(future.done, timeout), 'query did not answer'
        return future.result()


@pytest.fixture(scope='module')
def running(ros, tiny_params):
    with LoggedNode({**tiny_params, 'labels': LABELS, 'publish_points': True}, 'tquery') as node:
        client = QueryClient()
        try:
            assert client.wait_for_node(60), node.output
            assert client.spin_until(client.query.service_is_ready, 30), node.output
            client.listen_labels()
            assert client.spin_until(lambda: client.received['segmentation/label_info'], 20)
            yield node, client
        finally:
            client.destroy_node()


def _generation(client):
    client.spin_until(lambda: False, 0.2)
    return client.received['segmentation/label_info'][-1].generation


def _settle(client, topic, quiet=1.0, timeout=30.0):
    """Spin until nothing new arrived on ``topic`` for ``quiet`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        count = len(client.received[topic])
        client.spin_until(lambda: len(client.received[topic]) != count, quiet)
        if len(client.received[topic]) == count:
            return


def _stream(client, stop, period=0.3):
    """Publish frames like a camera until ``stop`` is set (from a thread, no spinning)."""
    seed = 100
    while not stop.is_set():
        client.send(_frame(seed=seed), info=_rectified_info())
        seed += 1
        stop.wait(period)


def test_first_query_without_segmentation_subscribers_waits_for_features(running):
    """Nobody subscribes to segmentation: the query makes the next frames compute features."""
    node, client = running
    assert client.count_subscribers('/tquery/segmentation/labels') == 0
    client.listen('depth/image')
    client.exchange(_frame(seed=1), ['depth/image'])  # a processed frame without features
    stop = threading.Event()
    streamer = threading.Thread(target=_stream, args=(client, stop), daemon=True)
    streamer.start()
    try:
        response = client.call_query(['fire extinguisher'])
    finally:
        stop.set()
        streamer.join()
    assert response.success, response.message
    assert 'older frame' not in response.message
    assert len(response.heatmaps) == 1 and response.heatmaps[0].encoding == '32FC1'


def test_query_round_trip(running):
    node, client = running
    for topic in ('segmentation/labels', 'segmentation/confidence'):
        client.listen(topic)
    client.listen('segmentation/query/heatmap', qos=LATCHED)
    client.listen('segmentation/query/colored', qos=LATCHED)
    generation = _generation(client)
    client.exchange(_frame(seed=7), ['segmentation/labels'], frame_id='cam_q')
    _settle(client, 'segmentation/labels')  # frames re-sent by exchange may still be in flight
    start = time.monotonic()
    response = client.call_query(['floor', 'fire extinguisher'])
    took = time.monotonic() - start
    assert response.success, response.message
    assert 'probability' in response.message
    # The latest processed frame: the last one whose label image was published.
    latest = client.received['segmentation/labels'][-1]
    assert stamp_ns(response) == stamp_ns(latest) and response.header.frame_id == 'cam_q'
    confidence_msg = next(m for m in client.received['segmentation/confidence']
                          if stamp_ns(m) == stamp_ns(latest))
    assert len(response.heatmaps) == len(response.best_scores) == 2
    assert len(response.best_u) == len(response.best_v) == 2
    heat = [conversions.image_to_array(image) for image in response.heatmaps]
    for i, image in enumerate(response.heatmaps):
        assert image.encoding == '32FC1' and (image.height, image.width) == SIZE
        assert stamp_ns(image) == stamp_ns(latest)
        assert ((heat[i] >= 0) & (heat[i] <= 1)).all()
        assert response.best_scores[i] == pytest.approx(heat[i].max(), abs=1e-6)
        assert heat[i][response.best_v[i], response.best_u[i]] == response.best_scores[i]
    # 'floor' is an active label: its heatmap is its own probability, so where the label
    # image says floor, the heatmap equals the confidence image (probability x 255).
    labels = conversions.image_to_array(latest)
    confidence = conversions.image_to_array(confidence_msg)
    floor = labels == 0
    if floor.any():
        np.testing.assert_allclose(heat[0][floor] * 255, confidence[floor], atol=0.51)
    assert (heat[0][~floor] <= confidence[~floor] / 255 + 0.01).all()
    # The views of the last query (latched), the labels untouched.
    for topic in ('segmentation/query/heatmap', 'segmentation/query/colored'):
        assert client.spin_until(lambda topic=topic: any(
            stamp_ns(m) == stamp_ns(latest) for m in client.received[topic]), 10), topic
    view = client.received['segmentation/query/heatmap'][-1]
    assert view.encoding == '32FC1'
    np.testing.assert_allclose(conversions.image_to_array(view), np.maximum(heat[0], heat[1]))
    coloured = client.received['segmentation/query/colored'][-1]
    assert coloured.encoding == 'rgb8' and (coloured.height, coloured.width) == SIZE
    assert _generation(client) == generation
    assert get_params(client, ['labels']) == {'labels': LABELS}
    assert took < 10, took


def test_query_with_templates_and_camera_names(running):
    node, client = running
    client.listen('segmentation/labels')
    client.exchange(_frame(seed=8), ['segmentation/labels'])
    ok = client.call_query(['door'], templates=['a photo of a {}.'], camera='/')
    assert ok.success, ok.message
    refused = client.call_query(['door'], camera='rear')
    assert not refused.success and "unknown camera 'rear'" in refused.message


REFUSED = {
    'empty': ([], (), 'phrase list is empty'),
    'blank': (['   '], (), 'must not be empty or blank'),
    'too-long': (['x' * 5000], (), 'has 5000 characters'),
    'control-characters': (['fire\x1b[2Jextinguisher'], (), 'control characters'),
    'newline': (['fire\nextinguisher'], (), 'control characters'),
    'too-many': ([f'thing {i}' for i in range(17)], (), 'at most 16'),
    'bad-template': (['door'], ['a photo of a thing.'], 'exactly one {}'),
}


@pytest.mark.parametrize('case', REFUSED)
def test_bad_queries_are_refused(running, case):
    node, client = running
    phrases, templates, reason = REFUSED[case]
    generation = _generation(client)
    response = client.call_query(phrases, templates)
    assert not response.success and reason in response.message, response.message
    assert not response.heatmaps and not response.best_scores
    line = node.wait_for('query refused: .*' + reason, 10)
    assert line and '\x1b' not in line and len(line) < 500
    assert node.alive() and _generation(client) == generation


def test_queries_while_frames_stream_and_labels_change(running):
    node, client = running
    client.listen('segmentation/labels')
    stop = threading.Event()
    streamer = threading.Thread(target=_stream, args=(client, stop, 0.2), daemon=True)
    streamer.start()
    results, changes = [], []
    try:
        for i in range(4):
            results.append(client.call_query(['fire extinguisher', f'shelf {i}']))
            changes.append(client.call_set_labels(LABELS[:2] if i % 2 == 0 else LABELS))
        results.append(client.call_query(['wall']))
    finally:
        stop.set()
        streamer.join()
    assert all(r.success for r in results), [r.message for r in results]
    assert all(c.success for c in changes), [c.message for c in changes]
    stamps = [stamp_ns(r) for r in results]
    assert stamps == sorted(stamps)  # always the latest processed frame, never going back
    assert node.alive()
    assert client.spin_until(lambda: list(
        client.received['segmentation/label_info'][-1].class_names) == LABELS, 10)
    assert get_params(client, ['labels']) == {'labels': LABELS}


def _depth_image_proc_xyz(depth, info):
    """depth_image_proc::convertDepth (point_cloud_xyz) for a float depth image, in numpy.

    image_geometry's cx, cy, fx, fy are P's; invalid (non-finite) depth gives NaN points.
    """
    p = np.asarray(info.p, np.float64).reshape(3, 4)
    cx, cy, fx, fy = p[0, 2], p[1, 2], p[0, 0], p[1, 1]
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    z = np.where(np.isfinite(depth), depth, np.nan).astype(np.float64)
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], -1)


def _cloud_exchange(client, info, seed):
    topics = ['depth/points', 'depth/image', 'depth/camera_info', 'segmentation/labels',
              'segmentation/confidence']
    client.listen('depth/points', PointCloud2)
    client.listen('depth/image')
    client.listen('depth/camera_info', CameraInfo)
    client.listen('segmentation/labels')
    client.listen('segmentation/confidence')
    frame = _frame(seed=seed)
    return frame, client.exchange(frame, topics, info=info)[1]


def test_semantic_cloud_layout_and_depth_image_proc_formula_for_k_not_p(running):
    node, client = running
    info = _rectified_info()
    frame, got = _cloud_exchange(client, info, seed=21)
    cloud_msg, scaled = got['depth/points'], got['depth/camera_info']
    assert list(scaled.k) != list(scaled.p[:3]) + list(scaled.p[4:7]) + list(scaled.p[8:11])
    fields = [(f.name, f.offset, f.datatype, f.count) for f in cloud_msg.fields]
    # x y z float32 at 0, 4, 8 (what Nav2's voxel layer and depth_image_proc read), rgb at 16
    # as depth_image_proc's xyzrgb, then the semantic fields in its padding.
    assert fields == [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 16, 7, 1),
                      ('label', 20, 2, 1), ('confidence', 24, 7, 1)]
    assert (cloud_msg.height, cloud_msg.width) == SIZE and cloud_msg.point_step == 32
    assert cloud_msg.row_step == 32 * SIZE[1] and not cloud_msg.is_dense
    assert cloud_msg.header.frame_id == got['depth/image'].header.frame_id
    cloud = read_cloud(cloud_msg)
    depth = conversions.image_to_array(got['depth/image'])
    expected = _depth_image_proc_xyz(depth, scaled)
    np.testing.assert_allclose(cloud['xyz'], expected, rtol=1e-5, atol=1e-6)
    with_k = np.asarray(scaled.k).reshape(3, 3)
    assert np.abs(cloud['xyz'][..., 0] - (np.arange(64) - with_k[0, 2]) * depth
                  / with_k[0, 0]).max() > 0.01  # K would give another cloud
    # Pixel for pixel with the label image; confidence its probability; rgb the frame's colour.
    labels = conversions.image_to_array(got['segmentation/labels'])
    confidence = conversions.image_to_array(got['segmentation/confidence'])
    assert np.array_equal(cloud['label'], labels)
    np.testing.assert_allclose(cloud['confidence'], confidence / 255.0, atol=1e-6)
    reference = np.asarray(PILImage.fromarray(frame).resize((64, 64), PILImage.BILINEAR))
    assert np.abs(unpack_rgb(cloud['rgb']).astype(int) - reference).max() <= 2


def test_cloud_falls_back_to_k_when_p_is_unset(running):
    node, client = running
    info = _rectified_info()
    info.p = [0.0] * 12
    _, got = _cloud_exchange(client, info, seed=22)
    scaled = got['depth/camera_info']
    k = np.asarray(scaled.k).reshape(3, 3)
    depth = conversions.image_to_array(got['depth/image'])
    v, u = np.mgrid[0:64, 0:64]
    expected = np.stack([(u - k[0, 2]) * depth / k[0, 0], (v - k[1, 2]) * depth / k[1, 1],
                         depth], -1)
    np.testing.assert_allclose(read_cloud(got['depth/points'])['xyz'], expected, rtol=1e-5,
                               atol=1e-6)


def test_service_is_listed_with_its_type(running):
    node, client = running
    services = dict(client.get_service_names_and_types())
    assert services.get('/tquery/query') == ['tipsv2_ros/srv/Query']
    assert rclpy.ok()


def test_cloud_without_segmentation_is_depth_image_proc_xyz(ros, tiny_params):
    """Without segmentation: x, y, z only, padded to 16 bytes like point_cloud_xyz."""
    params = {**tiny_params, 'tasks': ['depth'], 'publish_points': True}
    with LoggedNode(params, 'tquery_xyz') as node:
        client = Client('tquery_xyz', name='tquery_xyz_client')
        try:
            assert client.wait_for_node(60), node.output
            client.listen('depth/points', PointCloud2)
            client.listen('depth/image')
            client.listen('depth/camera_info', CameraInfo)
            topics = ['depth/points', 'depth/image', 'depth/camera_info']
            _, got = client.exchange(_frame(seed=30), topics, info=_rectified_info())
            cloud_msg = got['depth/points']
            fields = [(f.name, f.offset, f.datatype, f.count) for f in cloud_msg.fields]
            assert fields == [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)]
            assert cloud_msg.point_step == 16 and cloud_msg.row_step == 16 * SIZE[1]
            depth = conversions.image_to_array(got['depth/image'])
            np.testing.assert_allclose(read_cloud(cloud_msg)['xyz'],
                                       _depth_image_proc_xyz(depth, got['depth/camera_info']),
                                       rtol=1e-5, atol=1e-6)
            # No segmentation, nothing to query: refused with the reason, the node serves on.
            query = client.create_client(Query, '/tquery_xyz/query')
            assert client.spin_until(query.service_is_ready, 20)
            future = query.call_async(Query.Request(phrases=['fire extinguisher']))
            assert client.spin_until(future.done, 30)
            assert not future.result().success
            assert 'segmentation is not enabled' in future.result().message
            assert node.alive()
        finally:
            client.destroy_node()


def test_query_names_its_camera(ros, tiny_params):
    """Two cameras: each query answers on its camera's latest frame, views under its prefix."""
    params = {**tiny_params, 'labels': LABELS, 'cameras': ['front', 'rear']}
    with LoggedNode(params, 'tquery_cams') as node:
        client = Client('tquery_cams/rear', name='tquery_cams_client')
        try:
            query = client.create_client(Query, '/tquery_cams/query')
            assert client.spin_until(lambda: query.service_is_ready() and
                                     client.image_pub.get_subscription_count() > 0, 60), \
                node.output
            client.listen('segmentation/labels')
            client.listen('segmentation/query/heatmap', qos=LATCHED)
            sent, _ = client.exchange(_frame(seed=40), ['segmentation/labels'], frame_id='rear')
            _settle(client, 'segmentation/labels')
            future = query.call_async(Query.Request(phrases=['door'], camera='rear'))
            assert client.spin_until(future.done, 30)
            answer = future.result()
            assert answer.success, answer.message
            assert answer.header.frame_id == 'rear'
            assert stamp_ns(answer) == stamp_ns(client.received['segmentation/labels'][-1])
            assert client.spin_until(lambda: any(
                stamp_ns(m) == stamp_ns(answer)
                for m in client.received['segmentation/query/heatmap']), 10)
            # The front camera has had no frame: its query says so (after its wait for one).
            future = query.call_async(Query.Request(phrases=['door'], camera='front'))
            assert client.spin_until(future.done, 60)
            assert not future.result().success
            assert "no frame of camera 'front'" in future.result().message
        finally:
            client.destroy_node()
