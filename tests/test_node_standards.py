# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Standard ROS knobs over real DDS: qos_overrides, --ros-args, labels parameters, max range.

``tipsv2 node --ros-args ...``, the labels parameters after set_labels, and depth beyond
``depth.max_range`` published as +Inf (REP 118).
"""
from hardening_helpers import frame, get_params, LABELS, set_params
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import running_node
from sensor_msgs.msg import Image

from tipsv2_ros.ros import conversions

pytestmark = pytest.mark.ros

NS = 'tstandards'


@pytest.fixture(scope='module')
def standards(ros, tiny_params, tmp_path_factory):
    # A parameter file's nested form of the overrides, as README shows it.
    params_file = tmp_path_factory.mktemp('params') / 'qos.yaml'
    params_file.write_text('\n'.join([
        '/**/tipsv2_perception:', '  ros__parameters:', '    qos_overrides:',
        f'      /{NS}/segmentation/labels:',
        '        publisher: {reliability: best_effort, depth: 1}', '']))
    # Everything after --ros-args goes to rclpy as written (`tipsv2 node --ros-args ...`).
    extra = ['--ros-args', '--params-file', str(params_file), '-p', 'qos.reliability:=reliable',
             '-p', f'qos_overrides./{NS}/image.subscription.reliability:=best_effort',
             '-p', f'qos_overrides./{NS}/depth/image.publisher.reliability:=best_effort',
             '-p', f'qos_overrides./{NS}/normals/image.publisher.depth:=7']
    with running_node({**tiny_params, 'labels': LABELS}, NS, extra,
                      name='standards_client') as pair:
        yield pair


def _listen_depth(client):
    """Subscribe to depth/image best_effort, as its qos_overrides publish it."""
    if 'depth/image' not in client.received:
        client.listen('depth/image', Image,
                      QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))


def _reliability(infos):
    # One endpoint per topic, the node's (its name may not be discovered yet: not compared).
    return [info.qos_profile.reliability for info in infos]


def test_qos_overrides_take_effect_on_inputs_and_outputs(standards):
    node, client = standards
    outputs = {t: _reliability(client.get_publishers_info_by_topic(f'/{NS}/{t}'))
               for t in ('depth/image', 'normals/image', 'segmentation/labels')}
    assert outputs['depth/image'] == [ReliabilityPolicy.BEST_EFFORT]
    # Each entity has its own profile: one topic's override does not leak into another.
    assert outputs['normals/image'] == [ReliabilityPolicy.RELIABLE]
    assert outputs['segmentation/labels'] == [ReliabilityPolicy.BEST_EFFORT]  # from the file
    inputs = {t: _reliability(client.get_subscriptions_info_by_topic(f'/{NS}/{t}'))
              for t in ('image', 'camera_info')}
    # qos.reliability (the old alias) sets the default; the standard override wins.
    assert inputs['image'] == [ReliabilityPolicy.BEST_EFFORT]
    assert inputs['camera_info'] == [ReliabilityPolicy.RELIABLE]
    values = get_params(client, [f'qos_overrides./{NS}/normals/image.publisher.depth',
                                 f'qos_overrides./{NS}/depth/image.publisher.reliability'])
    assert list(values.values()) == [7, 'best_effort']
    # A best_effort output still reaches a best_effort subscriber.
    _listen_depth(client)
    client.exchange(frame(), ['depth/image'])


def test_set_labels_keeps_the_labels_parameters_in_step(standards):
    node, client = standards
    client.listen_labels()
    assert client.spin_until(lambda: client.received['segmentation/label_info'], 10)
    before = client.received['segmentation/label_info'][-1].generation
    templates = get_params(client, ['templates'])['templates']
    try:
        response = client.call_set_labels(['glass door', '  café   table '])
        assert response.success, response.message
        assert get_params(client, ['labels', 'templates']) == {
            'labels': ['glass door', 'café table'], 'templates': templates}
        # One label change, one new generation (keeping the parameters in step builds nothing).
        assert client.spin_until(lambda: client.received['segmentation/label_info'][-1]
                                 .generation == before + 1, 10)
        client.spin_until(lambda: False, 1.0)
        assert client.received['segmentation/label_info'][-1].generation == before + 1
        response = client.call_set_labels(['floor', 'door'], templates=['a photo of a {}.'])
        assert response.success, response.message
        assert get_params(client, ['labels', 'templates']) == {
            'labels': ['floor', 'door'], 'templates': ['a photo of a {}.']}
        # A parameter change goes through the same validation as the service.
        refused = set_params(client, {'labels': ['door', 'Door']})[0]
        assert not refused.successful and 'duplicate' in refused.reason
        assert get_params(client, ['labels'])['labels'] == ['floor', 'door']
    finally:
        assert client.call_set_labels(LABELS, templates).success
    assert get_params(client, ['labels', 'templates']) == {'labels': LABELS,
                                                           'templates': templates}


def test_depth_beyond_max_range_is_published_as_inf(standards):
    node, client = standards
    _listen_depth(client)
    _, got = client.exchange(frame(seed=11), ['depth/image'])
    depth = conversions.image_to_array(got['depth/image']).copy()
    assert np.isfinite(depth).all()  # the default (10 m, the head's range) is never reached
    limit = float(np.median(depth))
    assert set_params(client, {'depth.max_range': limit})[0].successful
    try:
        client.clear()
        _, got = client.exchange(frame(seed=11), ['depth/image'])
        capped = conversions.image_to_array(got['depth/image'])
        far = depth >= np.float32(limit)
        assert 0 < far.sum() < far.size
        assert np.isposinf(capped[far]).all()
        np.testing.assert_allclose(capped[~far], depth[~far], rtol=1e-5)
        assert not set_params(client, {'depth.max_range': -1.0})[0].successful
    finally:
        assert set_params(client, {'depth.max_range': 10.0})[0].successful
