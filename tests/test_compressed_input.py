# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Compressed camera input (image_transport's compressed plugin: jpeg, png), over real DDS."""
import io

import numpy as np
from PIL import Image as PILImage
import pytest
from ros_helpers import Client, NodeProcess
from sensor_msgs.msg import CompressedImage

from tipsv2_ros.ros import compressed, conversions
from tipsv2_ros.ros.compressed import CompressedImageError


def _frame(height=48, width=64, seed=0):
    # Smooth content, so that JPEG stays close to the original.
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = [rng.uniform(0, 255) + 100 * np.sin(x / (7 + c) + y / (9 + seed)) for c in range(3)]
    return np.clip(np.stack(base, -1), 0, 255).astype(np.uint8)


def _encode(array, codec, mode=None, **save):
    out = io.BytesIO()
    PILImage.fromarray(array, mode).save(out, {'jpeg': 'JPEG', 'png': 'PNG'}[codec], **save)
    return out.getvalue()


def _message(data, fmt, stamp_ns=None, frame_id='cam'):
    msg = CompressedImage(format=fmt)
    msg.data.frombytes(data)
    msg.header.frame_id = frame_id
    if stamp_ns is not None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    return msg


# --- decoding (as image_transport's compressed plugin writes the messages) ---------------
def test_png_colour_is_exact_whatever_the_original_encoding():
    rgb = _frame()
    # The plugin hands the codec BGR images (OpenCV), which the file stores as true RGB.
    for fmt in ('rgb8; png compressed bgr8', 'bgr8; png compressed bgr8', 'png'):
        np.testing.assert_array_equal(
            compressed.compressed_to_rgb(_message(_encode(rgb, 'png'), fmt)), rgb)


def test_jpeg_colour_is_close_and_not_swapped():
    rgb = _frame()
    decoded = compressed.compressed_to_rgb(
        _message(_encode(rgb, 'jpeg', quality=95), 'rgb8; jpeg compressed bgr8'))
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - rgb).mean() < 4
    # Red and blue differ in this frame: a swap would be far off.
    assert np.abs(decoded[..., ::-1].astype(int) - rgb).mean() > 20


def test_codec_fed_rgb_bytes_is_swapped_back():
    rgb = _frame()
    # "compressed rgb8": the codec got RGB bytes as if they were BGR, so the file holds BGR.
    msg = _message(_encode(np.ascontiguousarray(rgb[..., ::-1]), 'png'),
                   'rgb8; png compressed rgb8')
    np.testing.assert_array_equal(compressed.compressed_to_rgb(msg), rgb)


def test_mono_and_16_bit_png():
    grey = _frame()[..., 0]
    out = compressed.compressed_to_rgb(_message(_encode(grey, 'png'), 'mono8; png compressed '))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    grey16 = grey.astype(np.uint16) * 256 + 7  # high byte = grey
    out = compressed.compressed_to_rgb(_message(_encode(grey16, 'png'),
                                                'mono16; png compressed mono16'))
    np.testing.assert_array_equal(out[..., 1], grey)  # the high byte, like raw mono16


@pytest.mark.parametrize('data, fmt, reason', [
    (b'', 'rgb8; jpeg compressed bgr8', 'empty'),
    (b'\xff\xd8\xff' + bytes(100), 'rgb8; jpeg compressed bgr8', 'cannot be decoded'),
    (b'not an image at all', 'png', 'cannot be decoded'),
    (None, 'rgb8; jpeg compressed bgr8', 'the data is PNG'),
    (None, '16UC1; compressedDepth png', 'compressedDepth'),
    (None, 'rgb8; tiff compressed bgr8', 'unsupported compressed format'),
])
def test_bad_compressed_frames_are_refused_with_the_reason(data, fmt, reason):
    data = _encode(_frame(), 'png') if data is None else data
    with pytest.raises(CompressedImageError, match=reason):
        compressed.compressed_to_rgb(_message(data, fmt))


def test_truncated_jpeg_is_refused():
    data = _encode(_frame(), 'jpeg')
    with pytest.raises(CompressedImageError, match='cannot be decoded'):
        compressed.compressed_to_rgb(_message(data[:len(data) // 2], 'jpeg'))


def test_decompression_bomb_is_refused():
    data = _encode(np.zeros((1, 1), np.uint8), 'png')
    big = _encode(np.zeros((9000, 9000), np.uint8), 'png')  # 81 MP of zeros: a small file
    assert len(big) < 200_000 and len(data) < 1000
    with pytest.raises(CompressedImageError, match='larger than'):
        compressed.compressed_to_rgb(_message(big, 'png'))


# --- the node --------------------------------------------------------------------------
def _reference_depth(tiny_params, frames):
    """Depth of ``frames`` computed in this process (the node's pipeline, same weights)."""
    from tipsv2_ros.ros.params import SPECS
    from tipsv2_ros.runtime import factory
    values = {**{name: spec.default for name, spec in SPECS.items()}, **tiny_params}
    runtime = factory.build(values)
    try:
        label_set = runtime.labels.build(values['labels'], values['templates'])
        results = runtime.pipeline.run(frames, frozenset({'depth'}), label_set, 'model', 0.0)
        return [result.depth for result in results]
    finally:
        runtime.close()


@pytest.mark.ros
def test_compressed_streams_are_processed_like_raw_frames(ros, tiny_params):
    # The transport's suffix goes on the remapped image topic, as image_transport does it.
    with NodeProcess({**tiny_params, 'image_transport': 'compressed'}, 'tcompressed',
                     extra=['--ros-args', '-r', 'image:=/tcamera/rgb']) as node:
        client = Client('tcompressed', name='compressed_client')
        pub = client.create_publisher(CompressedImage, '/tcamera/rgb/compressed', 1)
        try:
            assert client.spin_until(lambda: pub.get_subscription_count() > 0, 60), \
                node.stop() or node.output
            # Nothing subscribes to the raw topic: the transport decides the input.
            assert client.image_pub.get_subscription_count() == 0
            client.listen('depth/image')
            client.listen('segmentation/labels')
            rgb = _frame(seed=3)
            sent = {'png': _encode(rgb, 'png'), 'jpeg': _encode(rgb, 'jpeg', quality=90)}
            got = {}
            for codec, data in sent.items():
                got[codec] = _exchange(client, pub, data, f'rgb8; {codec} compressed bgr8')
            jpeg_rgb = np.asarray(PILImage.open(io.BytesIO(sent['jpeg'])).convert('RGB'))
            expected = _reference_depth(tiny_params, [rgb, jpeg_rgb])
            for codec, reference in zip(('png', 'jpeg'), expected):
                depth = conversions.image_to_array(got[codec]['depth/image'])
                np.testing.assert_allclose(depth, reference, rtol=1e-4, atol=1e-4,
                                           err_msg=codec)
                assert got[codec]['depth/image'].header.frame_id == 'cam_optical'
            # A bad frame costs that frame only.
            pub.publish(_message(b'garbage', 'rgb8; jpeg compressed bgr8', frame_id='x'))
            assert client.spin_until(lambda: client.status and client.status['bad_frames'], 20)
            _exchange(client, pub, sent['png'], 'rgb8; png compressed bgr8')
        finally:
            client.destroy_node()
    assert 'cannot be decoded' in node.output, node.output


def _exchange(client, pub, data, fmt, timeout=30.0):
    """Publish a compressed frame (again every 0.5 s) until its outputs come back."""
    import time

    import rclpy
    end, stamps = time.monotonic() + timeout, []
    while time.monotonic() < end:
        stamp = client.get_clock().now().nanoseconds
        stamps.append(stamp)
        pub.publish(_message(data, fmt, stamp, 'cam_optical'))
        resend = time.monotonic() + 0.5
        while time.monotonic() < resend:
            rclpy.spin_once(client, timeout_sec=0.02)
            for stamp in stamps:
                found = {t: next((m for m in client.received[t] if m.header.stamp.sec * 10**9
                                  + m.header.stamp.nanosec == stamp), None)
                         for t in ('depth/image', 'segmentation/labels')}
                if all(found.values()):
                    return found
    raise AssertionError(f'no outputs for the {fmt!r} stream')
