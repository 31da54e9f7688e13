# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Bad frames and camera_info over real DDS: each gets a clear log line, none stops the node.

One node serves the whole module; after every case it must still answer a good frame with
its parameters unchanged (`assert_intact`).
"""
import re
import time

from hardening_helpers import (assert_intact, frame, LABELS, LoggedNode, provoke,
                               raw_image, reset_peak)
import numpy as np
import pytest
from rclpy.serialization import serialize_message
from ros_helpers import camera_info, Client, stamp_ns
from sensor_msgs.msg import CameraInfo, PointCloud2

from tipsv2_ros.ros import conversions, processes

pytestmark = pytest.mark.ros

EXPECTED = {'labels': LABELS, 'segmentation.threshold': 0.0, 'model.input_size': 112}


@pytest.fixture(scope='module')
def running(ros, tiny_params):
    with LoggedNode({**tiny_params, 'labels': LABELS, 'publish_points': True}, 'hin') as node:
        client = Client('hin', name='hin_client')
        try:
            assert client.wait_for_node(60), node.output
            client.listen('depth/image')
            client.listen('depth/camera_info', CameraInfo)
            client.listen('depth/points', PointCloud2)
            yield node, client
        finally:
            client.destroy_node()


# --- frames the node refuses -------------------------------------------------------------
@pytest.mark.parametrize('encoding', ['16UC3', '32FC1', 'unknown_enc', '', 'RGB8',
                                      '\x1b[31mred' + 'x' * 5000],
                         ids=['16UC3', '32FC1', 'unknown', 'empty', 'upper-case',
                              'escape-sequence-5kB'])
def test_unsupported_encoding(running, encoding):
    node, client = running
    line = provoke(node, client, lambda: raw_image(encoding),
                   re.escape(f'frame dropped: unsupported image encoding {encoding[:40]!r}'))
    # Untrusted text reaches the log escaped and bounded: no terminal escape, no 5 kB line.
    assert '\x1b' not in line and len(line) < 1000
    assert_intact(node, client, EXPECTED)


LAYOUTS = {
    'step-smaller-than-a-row': (
        {'step': 100}, r'rgb8 image step 100 is smaller than width \* bytes per pixel = '
        r'64 \* 3 = 192'),
    'data-shorter-than-step-x-height': (
        {'data_len': 1000},
        r'rgb8 image has 1000 bytes of data, fewer than step \* height = 192 \* 48'),
    'zero-width': ({'width': 0, 'step': 0}, 'empty rgb8 image: width 0, height 48'),
    'zero-height': ({'height': 0}, 'empty rgb8 image: width 64, height 0'),
    'yuv422-odd-width': ({'encoding': 'yuv422', 'width': 63, 'step': 126},
                         'yuv422 image needs an even width'),
    'bayer-1x1': ({'encoding': 'bayer_rggb8', 'width': 1, 'height': 1, 'step': 1},
                  'bayer_rggb8 image must be at least 2x2'),
    'mono16-odd-step': ({'encoding': 'mono16', 'width': 64, 'step': 127},
                        'mono16 image step 127 is smaller than'),
}


@pytest.mark.parametrize('case', LAYOUTS)
def test_bad_layout(running, case):
    node, client = running
    fields, pattern = LAYOUTS[case]
    provoke(node, client, lambda: raw_image(**fields), 'frame dropped: ' + pattern)
    assert_intact(node, client, EXPECTED)


# --- unusual frames the node accepts ------------------------------------------------------
def test_padded_rows_give_the_outputs_of_the_unpadded_frame(running):
    node, client = running
    image = frame(seed=11)
    _, plain = client.exchange(image, ['depth/image'])
    padded = raw_image(step=64 * 3 + 5)  # 5 odd bytes of padding per row
    rows = np.full((48, 64 * 3 + 5), 0xAB, np.uint8)
    rows[:, :64 * 3] = image.reshape(48, -1)
    padded.data = rows.tobytes()
    got = _exchange_msg(client, padded, 'depth/image')
    np.testing.assert_allclose(conversions.image_to_array(got),
                               conversions.image_to_array(plain['depth/image']), atol=1e-6)


def test_one_pixel_frame(running):
    node, client = running
    _, got = client.exchange(frame(1, 1, seed=2), ['depth/image'])
    depth = conversions.image_to_array(got['depth/image'])
    assert depth.shape == (64, 64) and np.isfinite(depth).all()


@pytest.mark.parametrize('encoding', ['mono16', 'bayer_rggb8', 'yuv422', 'rgb16'])
def test_unusual_valid_encodings(running, encoding):
    node, client = running
    width, depth = 64, {'mono16': 2, 'bayer_rggb8': 1, 'yuv422': 2, 'rgb16': 6}[encoding]
    msg = raw_image(encoding, width=width, height=48, step=width * depth)
    assert _exchange_msg(client, msg, 'depth/image').height == 64


def test_8k_frame_is_handled_without_a_memory_spike(running):
    """7680x4320 rgb8 (99.5 MB): shrunk in uint8 before the float conversion."""
    node, client = running
    image = np.zeros((4320, 7680, 3), np.uint8)
    image[::7, ::5] = 200
    client.exchange(frame(seed=3), ['depth/image'])
    reset_peak(node.proc.pid)
    figures = [processes.figures(node.proc.pid)]
    for _ in range(2):  # the second one shows that the first left nothing growing behind
        msg = conversions.array_to_image(image, 'rgb8')
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        _exchange_msg(client, msg, 'depth/image', resend=10.0, timeout=90.0)
        client.spin_until(lambda: False, 1.0)  # the worker lets go of the frame after publishing
        figures.append(processes.figures(node.proc.pid))
    # Receiving alone costs ~3 frames in rmw and rclpy (DDS's reassembly buffer, the C
    # message, the Python copy) plus the 64 MB shared-memory segment; the float resize used
    # to add 4 frames more (478 MB). Measured: a 416 MB peak, 713 MB before the fix.
    frame_mb = image.nbytes / 2**20
    assert figures[-1]['VmHWM'] - figures[0]['VmRSS'] < 5 * frame_mb * 1024, figures
    assert figures[2]['VmRSS'] - figures[1]['VmRSS'] < 0.5 * frame_mb * 1024, figures
    assert_intact(node, client, EXPECTED)


# --- camera_info and headers --------------------------------------------------------------
def _info(**changes) -> CameraInfo:
    info = camera_info(64, 48)
    for name, value in changes.items():
        setattr(info, name, value)
    return info


BAD_INFOS = {
    'zero-intrinsics': ({'k': [0.0] * 9, 'p': [0.0] * 12}, r'focal lengths fx=0, fy=0 are not '
                        'positive'),
    'nan-intrinsics': ({'k': [float('nan')] + [0.0] * 8}, 'camera matrix K is not finite'),
    'negative-focal-length': ({'k': [-300.0, 0, 32, 0, 300.0, 24, 0, 0, 1]},
                              'fx=-300, fy=300 are not positive'),
    'size-disagrees-with-image': ({'width': 640, 'height': 480},
                                  'describes a 640x480 image .* but the frame is 64x48'),
    'no-size': ({'width': 0, 'height': 0}, r'no image size \(0x0\)'),
}


@pytest.mark.parametrize('case', BAD_INFOS)
def test_unusable_camera_info_costs_only_camera_info_and_points(running, case):
    node, client = running
    fields, pattern = BAD_INFOS[case]
    client.clear()
    sent, _ = client.exchange(frame(seed=4), ['depth/image'], info=_info(**fields))
    assert node.wait_for('camera_info not usable, so no depth/camera_info or depth/points '
                         f'for this frame: .*{pattern}', 20), node.output[-2000:]
    client.spin_until(lambda: False, 0.5)  # anything published after depth/image arrives
    stamp = stamp_ns(sent)
    for topic in ('depth/camera_info', 'depth/points'):
        assert not [m for m in client.received[topic] if stamp_ns(m) == stamp], topic
    # A good camera_info afterwards is used again.
    client.exchange(frame(seed=5), ['depth/camera_info', 'depth/points'], info=_info())
    assert_intact(node, client, EXPECTED)


def test_empty_frame_id_is_copied_with_a_warning(running):
    node, client = running
    _, got = client.exchange(frame(seed=6), ['depth/image'], frame_id='')
    assert got['depth/image'].header.frame_id == ''
    assert node.wait_for('empty frame_id; outputs copy it, TF lookups will fail', 10)
    assert_intact(node, client, EXPECTED)


def test_stamps_going_backwards_are_kept_with_a_warning(running):
    node, client = running
    now = client.get_clock().now().nanoseconds
    client.exchange(frame(seed=7), ['depth/image'], stamp_ns=now)
    sent, got = client.exchange(frame(seed=8), ['depth/image'], stamp_ns=now - 10**10)
    assert got['depth/image'].header.stamp == sent.header.stamp
    assert node.wait_for('stamps went backwards', 10)
    assert_intact(node, client, EXPECTED)


def test_zero_stamp_is_kept_with_a_warning(running):
    node, client = running
    _, got = client.exchange(frame(seed=9), ['depth/image'], stamp_ns=0)
    assert stamp_ns(got['depth/image']) == 0
    assert node.wait_for('the stamp is zero', 10)
    assert_intact(node, client, EXPECTED)


def test_frame_id_that_is_not_utf8(running):
    """A C++ driver may send any bytes; rclpy decodes them with replacement characters."""
    node, client = running
    msg = raw_image(frame_id='AAAA')
    data = serialize_message(msg).replace(b'AAAA', b'\xff\xfe\xfd\xfc')
    got = _exchange_msg(client, data, 'depth/image', stamp=stamp_ns(msg))
    assert got.header.frame_id == '\ufffd' * 4
    assert_intact(node, client, EXPECTED)


def _exchange_msg(client, msg, topic, stamp=None, resend=0.5, timeout=30.0):
    """Publish ``msg`` (an Image or its serialized bytes) until ``topic`` answers its stamp."""
    stamp = stamp_ns(msg) if stamp is None else stamp
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        client.image_pub.publish(msg)
        found = client.spin_until(
            lambda: any(stamp_ns(m) == stamp for m in client.received[topic]), resend)
        if found:
            return next(m for m in client.received[topic] if stamp_ns(m) == stamp)
    raise AssertionError(f'no {topic} for stamp {stamp} within {timeout} s')


# --- the pieces behind these answers, in-process ----------------------------------------
def test_frames_above_4k_are_shrunk_in_uint8_within_one_grey_level():
    from tipsv2_ros.runtime.frame import processing
    from tipsv2_ros.runtime.frame import pipeline
    image = np.random.default_rng(0).integers(0, 255, (2161, 3840, 3), dtype=np.uint8)
    assert pipeline._shrink_huge(image[:2160], (112, 112)).shape == (2160, 3840, 3)  # as is
    shrunk = pipeline._shrink_huge(image, (112, 112))
    assert shrunk.shape == (112, 112, 3)
    exact = processing.to_pixel_values(image, (112, 112))
    assert (processing.to_pixel_values(shrunk, (112, 112)) - exact).abs().max() < 1 / 255


def test_camera_info_problem_accounts_for_roi_and_binning():
    info = camera_info(640, 480)
    assert conversions.camera_info_problem(info, (480, 640)) is None
    info.binning_x = info.binning_y = 2
    assert conversions.camera_info_problem(info, (240, 320)) is None
    info.roi.width, info.roi.height = 200, 100
    assert conversions.camera_info_problem(info, (50, 100)) is None
    assert 'describes a 100x50 image' in conversions.camera_info_problem(info, (240, 320))


def test_throttle_budgets_per_key_and_caps_the_number_of_keys():
    from tipsv2_ros.ros.throttle import Throttle
    lines = []

    class Logger:
        warning = error = lines.append

    throttle = Throttle(Logger(), period=60.0, max_keys=3)
    for key in ('a', 'a', 'b', 'c', 'd', 'e', 'c'):
        throttle.warn(key, key)
    # 'a' once, 'b', 'c' once each; 'd' opens the shared budget that 'e' then finds used.
    assert lines == ['a', 'b', 'c', 'd']
