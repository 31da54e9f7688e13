# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Bad set_labels requests and parameter changes: refused with a reason, nothing changes.

tests/test_node.py covers the basic refusals (empty list, empty label, 'door'/'Door', 256
labels, a 10 000-character label, a tab) by their responses; here every case also checks
that the label info, the parameters and the frame path are untouched.
"""
import time

from hardening_helpers import assert_intact, frame, get_params, LABELS, LoggedNode, set_params
import numpy as np
import pytest
from ros_helpers import Client

from tipsv2_ros.ros import conversions

pytestmark = pytest.mark.ros

EXPECTED = {'labels': LABELS, 'segmentation.threshold': 0.0, 'max_rate': 0.0,
            'depth.view_max': 10.0, 'output_resolution': 'model'}


@pytest.fixture(scope='module')
def running(ros, tiny_params):
    with LoggedNode({**tiny_params, 'labels': LABELS}, 'hlab') as node:
        client = Client('hlab', name='hlab_client')
        try:
            assert client.wait_for_node(60), node.output
            client.listen_labels()
            client.listen('segmentation/labels')
            assert client.spin_until(lambda: client.received['segmentation/label_info'], 20)
            yield node, client
        finally:
            client.destroy_node()


def _label_info(client):
    client.spin_until(lambda: False, 0.2)  # let a (wrongly) re-published label info arrive
    return client.received['segmentation/label_info'][-1]


def _assert_labels_untouched(node, client, generation):
    info = _label_info(client)
    assert list(info.class_names) == LABELS and info.generation == generation
    assert_intact(node, client, EXPECTED)


REFUSED = {
    'blank-label': (['floor', '   '], 'must not be empty or blank'),
    'duplicate-after-whitespace-folding': (['glass door', 'glass  door'], 'duplicate label'),
    '1000-labels': ([f'thing {i}' for i in range(1000)], '1000 labels given'),
    '10kB-non-ascii-label': (['椅' * 3500], 'has 3500 characters'),
    # (A NUL never arrives: ROS strings end at it, so 'floor\x00' reaches the node as 'floor'.)
    'bell-character': (['floor\x07'], 'control characters'),
    'newline': (['floor\nwall'], 'control characters'),
    'terminal-escape': (['\x1b[2Jfloor'], 'control characters'),
}


@pytest.mark.parametrize('case', REFUSED)
def test_set_labels_refused(running, case):
    node, client = running
    labels, reason = REFUSED[case]
    generation = _label_info(client).generation
    start = time.monotonic()
    response = client.call_set_labels(labels)
    # Refusals come from validation, before any text is encoded: fast even for 1000 labels.
    assert time.monotonic() - start < 10
    assert not response.success and reason in response.message, response.message
    assert list(response.class_names) == LABELS
    line = node.wait_for('labels unchanged: .*' + reason, 10)
    assert line and '\x1b' not in line and '\x00' not in line and len(line) < 500
    _assert_labels_untouched(node, client, generation)


TEMPLATES_REFUSED = {
    'no-placeholder': (['a photo of a thing.'], 'exactly one {}'),
    'two-placeholders': (['a {} next to a {}.'], 'exactly one {}'),
    'stray-brace': (['a {} in {a} box.'], 'no other braces'),
    '65-templates': ([f'photo {i} of a {{}}.' for i in range(65)], 'at most 64'),
}


@pytest.mark.parametrize('case', TEMPLATES_REFUSED)
def test_set_labels_with_bad_templates_refused(running, case):
    node, client = running
    templates, reason = TEMPLATES_REFUSED[case]
    generation = _label_info(client).generation
    response = client.call_set_labels(['floor', 'wall'], templates)
    assert not response.success and reason in response.message, response.message
    _assert_labels_untouched(node, client, generation)


def test_refusals_of_test_node_leave_everything_untouched(running):
    node, client = running
    generation = _label_info(client).generation
    for labels in ([], ['floor', ''], ['door', 'Door'], [f'l{i}' for i in range(256)],
                   ['x' * 10_000], ['tab\tle']):
        assert not client.call_set_labels(labels).success
    _assert_labels_untouched(node, client, generation)


@pytest.mark.parametrize('labels, names', [
    (['café', '椅子', '🪑 stool'], ['café', '椅子', '🪑 stool']),
    (['  glass   door ', 'floor'], ['glass door', 'floor']),
    ([f'thing {i}' for i in range(255)], [f'thing {i}' for i in range(255)]),
], ids=['non-ascii', 'whitespace-folded', '255-labels'])
def test_set_labels_accepted(running, labels, names):
    node, client = running
    before = _label_info(client).generation
    try:
        response = client.call_set_labels(labels)
        assert response.success, response.message
        assert list(response.class_names) == names
        assert client.spin_until(lambda: client.received['segmentation/label_info'][-1]
                                 .generation > before, 20)
        info = client.received['segmentation/label_info'][-1]
        assert list(info.class_names) == names
        _, got = client.exchange(frame(seed=21), ['segmentation/labels'])
        assert conversions.image_to_array(got['segmentation/labels']).max() < len(names)
    finally:
        assert client.call_set_labels(LABELS).success


# --- parameters ---------------------------------------------------------------------------
PARAMS_REFUSED = {
    'labels-empty': ('labels', [], 'the label list is empty'),
    'labels-duplicate': ('labels', ['floor', 'FLOOR'], 'duplicate label'),
    'labels-control-character': ('labels', ['floor\r'], 'control characters'),
    'templates-without-placeholder': ('templates', ['a photo.'], 'exactly one {}'),
    'view-max-zero': ('depth.view_max', 0.0, 'out of range'),
    'max-rate-negative': ('max_rate', -1.0, 'out of range'),
    'threshold-nan': ('segmentation.threshold', float('nan'), 'out of range'),
    'output-resolution-empty': ('output_resolution', '', 'must be one of model, input'),
    'max-rate-wrong-type': ('max_rate', 'fast', 'Wrong parameter type'),
    'undeclared': ('no.such.parameter', 1.0, 'undeclared'),
}


@pytest.mark.parametrize('case', PARAMS_REFUSED)
def test_invalid_parameter_refused_with_a_reason(running, case):
    node, client = running
    name, value, reason = PARAMS_REFUSED[case]
    generation = _label_info(client).generation
    result, = set_params(client, {name: value})
    assert not result.successful and reason in result.reason, result.reason
    _assert_labels_untouched(node, client, generation)


@pytest.mark.parametrize('name, value', [
    ('model.input_size', 224), ('cameras', ['front']), ('tasks', ['depth']),
    ('qos.reliability', 'reliable'), ('device', 'cpu'), ('model.vision_weights', '/x.npz'),
    ('publish_points', True),
])
def test_read_only_parameter_refused(running, name, value):
    node, client = running
    before = get_params(client, [name])
    result, = set_params(client, {name: value})
    assert not result.successful and 'read-only' in result.reason, result.reason
    assert get_params(client, [name]) == before
    assert_intact(node, client, EXPECTED)


def test_threshold_change_republishes_label_info_with_the_new_value(running):
    node, client = running
    generation = _label_info(client).generation
    try:
        assert set_params(client, {'segmentation.threshold': 0.3})[0].successful
        assert client.spin_until(
            lambda: np.isclose(client.received['segmentation/label_info'][-1].threshold, 0.3),
            20)
        assert client.received['segmentation/label_info'][-1].generation == generation
    finally:
        assert set_params(client, {'segmentation.threshold': 0.0})[0].successful
    assert client.spin_until(
        lambda: client.received['segmentation/label_info'][-1].threshold == 0.0, 20)
    assert_intact(node, client, EXPECTED)
