# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""tipsv2_ros.ros.image_decode and .conversions on messages built in-process (no DDS)."""
import sys

from cloud_reader import read_cloud, unpack_rgb
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import Header
import torch

from tipsv2_ros import processing
from tipsv2_ros.ros import conversions, image_decode
from tipsv2_ros.ros.image_decode import ImageConversionError

SIZES = [(1, 1), (3, 5), (479, 641)]
NATIVE_BIG = sys.byteorder == 'big'


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _message(encoding, pixels, pad=0, big=NATIVE_BIG):
    """Build an Image of ``pixels`` (H, W, C), each row followed by ``pad`` bytes."""
    h, w = pixels.shape[:2]
    rows = pixels.astype(pixels.dtype.newbyteorder('>' if big else '<')).view(np.uint8)
    rows = rows.reshape(h, -1)
    data = np.zeros((h, rows.shape[1] + pad), np.uint8)
    data[:, :rows.shape[1]] = rows
    return Image(height=h, width=w, encoding=encoding, is_bigendian=big,
                 step=data.shape[1], data=data.tobytes())


def _packed_case(encoding, rgb, seed=0):
    """Pixels of ``encoding`` that show ``rgb``, and what image_to_rgb must return."""
    h, w, _ = rgb.shape
    alpha = np.full((h, w, 1), 99, np.uint8)
    order = {'rgb': rgb, 'bgr': rgb[..., ::-1], 'grey': rgb[..., :1]}
    channels, depth, kind = image_decode._PACKED[encoding]
    pixels = np.concatenate([order[kind], alpha], -1) if channels == 4 else order[kind]
    expected = np.repeat(rgb[..., :1], 3, -1) if kind == 'grey' else rgb
    if depth == 2:  # the low byte must not matter: 16-bit reads as its high byte
        low = np.random.default_rng(seed).integers(0, 256, pixels.shape, dtype=np.uint16)
        pixels = (pixels.astype(np.uint16) << 8) | low
    return pixels, expected


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('pad', [0, 7])
@pytest.mark.parametrize('encoding', list(image_decode._PACKED))
def test_packed_encodings_are_views(encoding, pad, size):
    pixels, expected = _packed_case(encoding, _rgb(*size))
    msg = _message(encoding, pixels, pad)
    rgb = image_decode.image_to_rgb(msg)
    assert rgb.shape == expected.shape and rgb.dtype == np.uint8
    assert np.array_equal(rgb, expected)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))
    assert rgb.strides[0] == msg.step
    if encoding.startswith('bgr') or encoding in ('8UC3', '8UC4'):
        assert rgb.strides[2] < 0
    if encoding in ('mono8', 'mono16', '8UC1'):
        assert rgb.strides[2] == 0


@pytest.mark.parametrize('big', [False, True], ids=['little', 'big'])
@pytest.mark.parametrize('encoding', ['mono16', 'rgb16', 'bgra16'])
def test_16_bit_byte_order(encoding, big):
    pixels, expected = _packed_case(encoding, _rgb(3, 5), seed=1)
    assert np.array_equal(image_decode.image_to_rgb(_message(encoding, pixels, 2, big)), expected)


def test_views_feed_the_model_input():
    rgb = _rgb(31, 43)
    reference = processing.to_pixel_values(rgb, (28, 28))
    for encoding in image_decode._PACKED:
        if encoding not in ('mono8', 'mono16', '8UC1'):
            msg = _message(encoding, _packed_case(encoding, rgb)[0], pad=3)
            got = processing.to_pixel_values(image_decode.image_to_rgb(msg), (28, 28))
            assert torch.equal(got, reference), encoding


def _yuv(rgb):
    """Return the BT.601 video-range Y, U, V of ``rgb``: the decoder's inverse."""
    r, g, b = np.moveaxis(rgb.astype(np.float64), -1, 0)
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return [np.round(c).astype(np.uint8) for c in (y, u, v)]


@pytest.mark.parametrize('size', [(1, 2), (3, 6), (479, 640)], ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('encoding', ['yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'])
def test_yuv422(encoding, size):
    h, w = size
    # Pixel pairs share their chroma, so give both pixels of a pair the same colour.
    rgb = np.repeat(_rgb(h, w // 2), 2, axis=1)
    y, u, v = _yuv(rgb)
    y0, y1, u, v = y[:, 0::2], y[:, 1::2], u[:, 0::2], v[:, 0::2]
    uyvy = image_decode._YUV422[encoding] == 'uyvy'
    macro = np.stack([u, y0, v, y1] if uyvy else [y0, u, y1, v], -1).reshape(h, w, 2)
    got = image_decode.image_to_rgb(_message(encoding, macro, pad=4))
    assert got.shape == (h, w, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - rgb).max() <= 3  # 8-bit YUV quantisation


def test_yuv422_known_colours_and_pixel_order():
    # U Y0 V Y1: video-range white, black, and the two pixels of one pair told apart.
    data = bytes([128, 235, 128, 235, 128, 16, 128, 16, 128, 16, 128, 235])
    msg = Image(height=1, width=6, encoding='uyvy', step=12, data=data)
    assert image_decode.image_to_rgb(msg)[0, :, 0].tolist() == [255, 255, 0, 0, 0, 255]
    red = Image(height=1, width=2, encoding='yuyv', step=4, data=bytes([81, 90, 81, 240]))
    assert np.abs(image_decode.image_to_rgb(red)[0].astype(int) - [255, 0, 0]).max() <= 2


def _mosaic(rgb, pattern):
    """Return the bayer mosaic of ``rgb``: each pixel keeps the channel its site samples."""
    channel = {'r': 0, 'g': 1, 'b': 2}
    sites = np.array([channel[c] for c in pattern]).reshape(2, 2)
    h, w, _ = rgb.shape
    pick = sites[np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2]
    return np.take_along_axis(rgb, pick[..., None], -1)


@pytest.mark.parametrize('size', [(2, 2), (5, 7), (480, 640)], ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('encoding', list(image_decode._BAYER))
def test_bayer(encoding, size):
    pattern, depth = image_decode._BAYER[encoding]
    h, w = size
    # Constant 2x2 cells come back exactly; an odd last row/column repeats its neighbour.
    cells = _rgb((h + 1) // 2, (w + 1) // 2)
    rgb = np.repeat(np.repeat(cells, 2, 0), 2, 1)[:h, :w]
    mosaic = _mosaic(rgb, pattern)
    if depth == 2:
        mosaic = mosaic.astype(np.uint16) << 8 | 0x55
    got = image_decode.image_to_rgb(_message(encoding, mosaic, pad=2))
    expected = rgb.copy()
    if h % 2:
        expected[-1] = expected[-2]
    if w % 2:
        expected[:, -1] = expected[:, -2]
    assert np.array_equal(got, expected)


@pytest.mark.parametrize('msg, match', [
    (Image(height=2, width=2, encoding='32FC1', step=8, data=bytes(16)),
     r"unsupported image encoding '32FC1'; supported: rgb8, bgr8, .*yuv422.*bayer_rggb8"),
    (Image(height=2, width=2, encoding='', step=6, data=bytes(12)),
     "unsupported image encoding ''"),
    (Image(height=0, width=4, encoding='rgb8', step=12), 'empty rgb8 image: width 4, height 0'),
    (Image(height=4, width=0, encoding='mono8', step=0), 'empty mono8 image: width 0, height 4'),
    (Image(height=2, width=4, encoding='rgb8', step=10, data=bytes(20)),
     r'rgb8 image step 10 is smaller than width \* bytes per pixel = 4 \* 3 = 12'),
    (Image(height=2, width=4, encoding='mono16', step=6, data=bytes(12)),
     r'step 6 is smaller than width \* bytes per pixel = 4 \* 2 = 8'),
    (Image(height=3, width=4, encoding='bgra8', step=16, data=bytes(47)),
     r'bgra8 image has 47 bytes of data, fewer than step \* height = 16 \* 3 = 48'),
    (Image(height=2, width=3, encoding='yuv422', step=6, data=bytes(12)),
     'yuv422 image needs an even width .* got 3'),
    (Image(height=1, width=4, encoding='bayer_rggb8', step=4, data=bytes(4)),
     'at least 2x2'),
])
def test_image_errors(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        image_decode.image_to_rgb(msg)
    assert issubclass(ImageConversionError, ValueError)


OUTPUTS = [('32FC1', np.float32, ()), ('32FC3', np.float32, (3,)), ('mono8', np.uint8, ()),
           ('rgb8', np.uint8, (3,)), ('16UC1', np.uint16, ()), ('mono16', np.uint16, ())]


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('encoding, dtype, channels', OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_array_to_image_round_trip(encoding, dtype, channels, size):
    arr = (np.random.default_rng(0).random(size + channels) * 200).astype(dtype)
    header = Header(frame_id='camera_optical_frame')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = conversions.array_to_image(arr, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (*size, encoding)
    assert msg.step == arr.strides[0] and msg.is_bigendian == NATIVE_BIG
    assert msg.header.frame_id == 'camera_optical_frame' and msg.header.stamp.nanosec == 345
    assert msg.data.typecode == 'B' and msg.data.tobytes() == arr.tobytes()
    back = conversions.image_to_array(msg)
    assert back.shape == arr.shape and np.array_equal(back, arr)
    assert np.shares_memory(back, np.frombuffer(msg.data, np.uint8))


def test_array_to_image_layouts():
    planar = np.random.default_rng(0).random((3, 4, 5), np.float32)
    normals = planar.transpose(1, 2, 0)  # (H, W, 3) view of a (3, H, W) tensor: not contiguous
    msg = conversions.array_to_image(normals, '32FC3')
    assert msg.step == 5 * 12 and np.array_equal(conversions.image_to_array(msg), normals)
    swapped = normals.astype('>f4' if not NATIVE_BIG else '<f4')
    msg = conversions.array_to_image(swapped, '32FC3')
    assert msg.is_bigendian == (not NATIVE_BIG) and msg.data.tobytes() == swapped.tobytes()
    assert np.array_equal(conversions.image_to_array(msg), normals)
    assert conversions.array_to_image(np.zeros((2, 3, 1), np.float32), '32FC1').width == 3
    padded = _message('32FC1', np.arange(6, dtype=np.float32).reshape(2, 3, 1), pad=4,
                      big=True)
    assert conversions.image_to_array(padded).tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize('arr, encoding, match', [
    (np.zeros((2, 2)), '32FC1', r'32FC1 needs a float32 array of shape \(H, W\), got float64'),
    (np.zeros((2, 2), np.float32), '32FC3', r'32FC3 needs a float32 array of shape \(H, W, 3\)'),
    (np.zeros((2, 2, 3), np.uint8), 'mono8', r'mono8 needs a uint8 array of shape \(H, W\)'),
    (np.zeros((2, 2), np.uint8), 'yuv422', "unsupported array encoding 'yuv422'"),
])
def test_array_to_image_errors(arr, encoding, match):
    with pytest.raises(ImageConversionError, match=match):
        conversions.array_to_image(arr, encoding)


def _camera_info(**kwargs):
    k = [500.0, 0.0, 319.5, 0.0, 450.0, 239.5, 0.0, 0.0, 1.0]
    p = [500.0, 0.0, 319.5, -25.0, 0.0, 450.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    return CameraInfo(height=480, width=640, distortion_model='plumb_bob',
                      d=[0.1, -0.2, 0.001, 0.002, 0.0], k=k, p=p,
                      r=np.eye(3).ravel(), **kwargs)


def test_scaled_camera_info():
    header = Header(frame_id='cam')
    out = conversions.scaled_camera_info(_camera_info(), (240, 320), header)
    k, p = out.k.reshape(3, 3), out.p.reshape(3, 4)
    assert (out.height, out.width, out.header.frame_id) == (240, 320, 'cam')
    assert k.tolist() == [[250, 0, 159.5], [0, 225, 119.5], [0, 0, 1]]
    assert p[0, 3] == -12.5 and np.array_equal(p[:, :3], k)
    assert out.distortion_model == 'plumb_bob' and list(out.d) == [0.1, -0.2, 0.001, 0.002, 0]
    assert np.array_equal(out.r, np.eye(3).ravel())
    assert deserialize_message(serialize_message(out), CameraInfo).k.tolist() == k.ravel(
    ).tolist()


def test_scaled_camera_info_folds_roi_and_binning():
    binned = conversions.scaled_camera_info(_camera_info(binning_x=2, binning_y=2), (256, 256))
    plain = conversions.scaled_camera_info(_camera_info(), (256, 256))
    assert np.allclose(binned.k, plain.k)  # the sensor area is the same, so is the result
    roi = RegionOfInterest(x_offset=100, y_offset=40, height=200, width=300)
    cropped = conversions.scaled_camera_info(_camera_info(roi=roi), (200, 300))
    assert cropped.k.reshape(3, 3)[:2, 2].tolist() == [219.5, 199.5]
    assert cropped.k[0] == 500 and cropped.roi.width == 0 and cropped.binning_x == 0
    with pytest.raises(ValueError, match='no image size'):
        conversions.scaled_camera_info(CameraInfo(), (256, 256))


@pytest.mark.parametrize('with_rgb', [False, True], ids=['xyz', 'xyzrgb'])
def test_points_to_cloud(with_rgb):
    depth = np.full((3, 5), 2.0, np.float32)
    depth[1, 2] = np.nan
    points = processing.depth_to_points(depth, np.array([[5.0, 0, 2], [0, 5.0, 1], [0, 0, 1]]))
    rgb = _rgb(3, 5) if with_rgb else None
    msg = conversions.points_to_cloud(points, Header(frame_id='cam'), rgb)
    # depth_image_proc's layouts: xyz padded to 16 bytes; xyzrgb with rgb at 16, 32 bytes.
    step = 32 if with_rgb else 16
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (3, 5, step, 5 * step)
    assert not msg.is_dense and msg.is_bigendian == NATIVE_BIG and len(msg.data) == 15 * step
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    expected = [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)] + [('rgb', 16, 7, 1)] * with_rgb
    assert fields == expected  # 7 = PointField.FLOAT32
    cloud = read_cloud(deserialize_message(serialize_message(msg), PointCloud2))
    assert np.array_equal(cloud['xyz'], points, equal_nan=True)
    assert np.isnan(cloud['xyz'][1, 2]).all()
    if with_rgb:
        assert np.array_equal(unpack_rgb(cloud['rgb']), rgb)
    # Padding bytes are zero: byte 12 of every point in both layouts.
    assert not np.frombuffer(msg.data, np.uint8).reshape(-1, step)[:, 12:16].any()


def test_semantic_cloud_layout():
    depth = np.full((4, 6), 1.5, np.float32)
    depth[2, 3] = np.inf
    points = processing.depth_to_points(depth, np.array([[5.0, 0, 2], [0, 5.0, 1], [0, 0, 1]]))
    rgb = _rgb(4, 6, seed=3)
    labels = np.random.default_rng(1).integers(0, 4, (4, 6), dtype=np.uint8)
    labels[0, 0] = 255
    confidence = np.random.default_rng(2).random((4, 6), dtype=np.float32)
    msg = conversions.points_to_cloud(points, Header(frame_id='cam'), rgb, labels, confidence)
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert fields == [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 16, 7, 1),
                      ('label', 20, 2, 1), ('confidence', 24, 7, 1)]  # 2 = UINT8
    assert (msg.point_step, msg.row_step, len(msg.data)) == (32, 6 * 32, 24 * 32)
    cloud = read_cloud(deserialize_message(serialize_message(msg), PointCloud2))
    assert np.array_equal(cloud['xyz'], points, equal_nan=True)
    assert np.isnan(cloud['xyz'][2, 3]).all() and np.isfinite(cloud['xyz'][0, 0]).all()
    assert np.array_equal(unpack_rgb(cloud['rgb']), rgb)
    assert np.array_equal(cloud['label'], labels) and cloud['label'].dtype == np.uint8
    assert np.array_equal(cloud['confidence'], confidence)


def test_points_to_cloud_errors():
    with pytest.raises(ValueError, match=r'\(H, W, 3\) float32'):
        conversions.points_to_cloud(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match='rgb must be'):
        conversions.points_to_cloud(np.zeros((2, 2, 3), np.float32), None, np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match='go together'):
        conversions.points_to_cloud(np.zeros((2, 2, 3), np.float32), None, None,
                                    np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match='confidence must be'):
        conversions.points_to_cloud(np.zeros((2, 2, 3), np.float32), None, None,
                                    np.zeros((2, 2), np.uint8), np.zeros((2, 2)))


def test_messages_serialise():
    msg = conversions.array_to_image(np.ones((4, 6), np.float32), '32FC1')
    back = deserialize_message(serialize_message(msg), Image)
    assert back.step == 24 and np.array_equal(conversions.image_to_array(back), np.ones((4, 6)))
