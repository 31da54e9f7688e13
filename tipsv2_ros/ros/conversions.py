# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""sensor_msgs <-> numpy without cv_bridge; the only module that builds or reads messages.

Incoming images become numpy *views* of ``msg.data`` wherever the encoding allows (see
`image_to_rgb`), so a frame costs no host copy before it reaches the device. Outgoing arrays
are written into ``msg.data`` with a single memcpy: ``array.array.frombytes`` of a byte
memoryview. Assigning ``bytes`` or a list to ``Image.data`` instead costs a second copy, or an
element-wise check when ``ROS_PYTHON_CHECK_FIELDS=1`` (rosidl_python#194).
"""
import re
import sys
from typing import Optional, Tuple

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from tipsv2_ros import processing

_NATIVE_BIG = sys.byteorder == 'big'

# encoding: (channels, bytes per channel, channel order); 8UC3 and 8UC4 are BGR like OpenCV.
_PACKED = {
    'rgb8': (3, 1, 'rgb'), 'bgr8': (3, 1, 'bgr'), 'rgba8': (4, 1, 'rgb'), 'bgra8': (4, 1, 'bgr'),
    'rgb16': (3, 2, 'rgb'), 'bgr16': (3, 2, 'bgr'), 'rgba16': (4, 2, 'rgb'),
    'bgra16': (4, 2, 'bgr'), 'mono8': (1, 1, 'grey'), 'mono16': (1, 2, 'grey'),
    '8UC1': (1, 1, 'grey'), '8UC3': (3, 1, 'bgr'), '8UC4': (4, 1, 'bgr'),
}
# 'yuv422' is UYVY in sensor_msgs/image_encodings.hpp; 'uyvy' and 'yuyv' are newer names.
_YUV422 = {'yuv422': 'uyvy', 'uyvy': 'uyvy', 'yuv422_yuy2': 'yuyv', 'yuyv': 'yuyv'}
_BAYER = {f'bayer_{p}{bits}': (p, bits // 8) for p in ('rggb', 'bggr', 'gbrg', 'grbg')
          for bits in (8, 16)}
SUPPORTED_ENCODINGS = tuple(_PACKED) + tuple(_YUV422) + tuple(_BAYER)
# BT.601 video-range luma, 1.164 * (Y - 16), plus 0.5 so that the cast to uint8 rounds.
_LUMA = ((np.arange(256) - 16) * 1.164 + 0.5).astype(np.float32)

# Encodings of `image_to_array` / `array_to_image`: (dtype, channels).
_NAMED = {'mono8': ('u1', 1), 'mono16': ('u2', 1), 'rgb8': ('u1', 3), 'bgr8': ('u1', 3),
          'rgba8': ('u1', 4), 'bgra8': ('u1', 4), 'rgb16': ('u2', 3), 'bgr16': ('u2', 3),
          'rgba16': ('u2', 4), 'bgra16': ('u2', 4)}
_CV_TYPE = re.compile(r'(8U|8S|16U|16S|32S|32F|64F)C([1-4])')


class ImageConversionError(ValueError):
    """An image message or array that cannot be converted; the message says why.

    For example ``unsupported image encoding '32FC1'; supported: rgb8, bgr8, …`` or
    ``rgb8 image step 10 is smaller than width * bytes per pixel = 4 * 3 = 12``.
    """


def image_to_rgb(msg: Image) -> np.ndarray:
    """Return the image as an (H, W, 3) uint8 RGB array, a view of ``msg.data`` if possible.

    Views (no copy): rgb8, rgba8 (channel slice), bgr8, bgra8, 8UC3, 8UC4 (reversed channels:
    a negative stride), mono8, 8UC1 (the grey channel broadcast with a zero stride), and the
    16-bit variants of these (the view reads the high byte of each sample, i.e. ``>> 8``).
    Copies: yuv422/uyvy and yuv422_yuy2/yuyv (BT.601, video range, as OpenCV), and bayer_*
    (a 2x2-cell demosaic: enough for a model that sees the image at 448x448).

    A view aliases the message, so don't write to it, and keep in mind that ``msg.data``
    cannot be resized while it lives. ``processing.to_pixel_values`` accepts all these views.
    """
    encoding = msg.encoding
    if encoding in _PACKED:
        channels, depth, order = _PACKED[encoding]
        _check_layout(msg, channels * depth)
        # The high byte of a 16-bit sample comes last in little-endian data.
        offset = depth - 1 if depth == 2 and not msg.is_bigendian else 0
        stride = {'rgb': depth, 'bgr': -depth, 'grey': 0}[order]
        if order == 'bgr':
            offset += 2 * depth
        return np.ndarray((msg.height, msg.width, 3), np.uint8, msg.data, offset,
                          (msg.step, channels * depth, stride))
    if encoding in _YUV422:
        return _yuv422_to_rgb(msg, _YUV422[encoding])
    if encoding in _BAYER:
        return _bayer_to_rgb(msg, *_BAYER[encoding])
    # repr() of a bounded prefix: the encoding is untrusted text that goes into the log.
    raise ImageConversionError(f'unsupported image encoding {encoding[:40]!r}; supported: '
                               f"{', '.join(SUPPORTED_ENCODINGS)}")


def _check_layout(msg: Image, pixel_bytes: int) -> None:
    h, w, step, enc = msg.height, msg.width, msg.step, msg.encoding
    if h == 0 or w == 0:
        raise ImageConversionError(f'empty {enc} image: width {w}, height {h}')
    if step < w * pixel_bytes:
        raise ImageConversionError(f'{enc} image step {step} is smaller than width * bytes per '
                                   f'pixel = {w} * {pixel_bytes} = {w * pixel_bytes}')
    if len(msg.data) < step * h:
        raise ImageConversionError(f'{enc} image has {len(msg.data)} bytes of data, fewer than '
                                   f'step * height = {step} * {h} = {step * h}')


def _yuv422_to_rgb(msg: Image, layout: str) -> np.ndarray:
    if msg.width % 2:
        raise ImageConversionError(f'{msg.encoding} image needs an even width (two pixels '
                                   f'share one chroma sample), got {msg.width}')
    _check_layout(msg, 2)
    h, w = msg.height, msg.width
    # (H, W/2, 4) macro-pixels of two pixels each: U Y0 V Y1 (uyvy) or Y0 U Y1 V (yuyv).
    macro = np.ndarray((h, w // 2, 4), np.uint8, msg.data, 0, (msg.step, 4, 1))
    (y0, y1), u, v = ((1, 3), 0, 2) if layout == 'uyvy' else ((0, 2), 1, 3)
    u = macro[..., u].astype(np.float32) - 128
    v = macro[..., v].astype(np.float32) - 128
    # OpenCV's ITU-R BT.601 coefficients (ITUR_BT_601_C*), so results match cv_bridge's.
    chroma = (1.596 * v, -0.391 * u - 0.813 * v, 2.018 * u)  # R, G, B offsets per pair
    rgb = np.empty((h, w // 2, 2, 3), np.float32)
    # One long loop per (pixel of the pair, channel): broadcasting into the small (2, 3)
    # inner shape in one call is five times slower in numpy.
    for k, y in enumerate((y0, y1)):
        luma = _LUMA[macro[..., y]]
        for c in range(3):
            np.add(luma, chroma[c], out=rgb[..., k, c])
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8).reshape(h, w, 3)


def _bayer_to_rgb(msg: Image, pattern: str, depth: int) -> np.ndarray:
    _check_layout(msg, depth)
    h, w = msg.height, msg.width
    if h < 2 or w < 2:
        raise ImageConversionError(f'{msg.encoding} image must be at least 2x2, got {w}x{h}')
    offset = depth - 1 if depth == 2 and not msg.is_bigendian else 0
    mosaic = np.ndarray((h, w), np.uint8, msg.data, offset, (msg.step, depth))
    h2, w2 = h // 2, w // 2
    sites = [mosaic[i:2 * h2:2, j:2 * w2:2] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1))]
    greens = [s for s, c in zip(sites, pattern) if c == 'g']
    green = ((greens[0].astype(np.uint16) + greens[1] + 1) >> 1).astype(np.uint8)
    cells = np.stack([sites[pattern.index('r')], green, sites[pattern.index('b')]], axis=-1)
    # Each 2x2 cell becomes one colour; an odd last row or column repeats its neighbour.
    rgb = np.repeat(cells, 2, axis=1)
    if w % 2:
        rgb = np.concatenate([rgb, rgb[:, -1:]], axis=1)
    rgb = np.repeat(rgb, 2, axis=0)
    return np.concatenate([rgb, rgb[-1:]], axis=0) if h % 2 else rgb


def _array_layout(encoding: str) -> Tuple[np.dtype, int]:
    if encoding in _NAMED:
        code, channels = _NAMED[encoding]
        return np.dtype(code), channels
    match = _CV_TYPE.fullmatch(encoding)
    if match is None:
        raise ImageConversionError(
            f"unsupported array encoding '{encoding}'; supported: {', '.join(_NAMED)} and "
            '{8U,8S,16U,16S,32S,32F,64F}C{1..4}')
    kind = {'U': 'u', 'S': 'i', 'F': 'f'}[match.group(1)[-1]]
    return np.dtype(f'{kind}{int(match.group(1)[:-1]) // 8}'), int(match.group(2))


def image_to_array(msg: Image) -> np.ndarray:
    """Return the raw samples: (H, W) for one channel, else (H, W, C); a view of ``msg.data``.

    For the encodings `array_to_image` writes (32FC1, 32FC3, mono8, rgb8, …); channels stay in
    message order and the dtype carries the message's byte order.
    """
    dtype, channels = _array_layout(msg.encoding)
    _check_layout(msg, channels * dtype.itemsize)
    dtype = dtype.newbyteorder('>' if msg.is_bigendian else '<')
    shape, strides = (msg.height, msg.width), (msg.step, channels * dtype.itemsize)
    if channels > 1:
        shape, strides = shape + (channels,), strides + (dtype.itemsize,)
    return np.ndarray(shape, dtype, msg.data, 0, strides)


def array_to_image(arr: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """Wrap an array in an Image: (H, W) or (H, W, C) matching ``encoding``'s dtype.

    Common encodings: 32FC1 (depth), 32FC3 (normals), mono8 (labels), rgb8 (views), 16UC1.
    The dtype must match exactly (a float64 depth map is an error, not a silent cast); a
    byte-swapped dtype is fine and sets ``is_bigendian``. A C-contiguous array costs one
    memcpy; any other is made contiguous first.
    """
    arr = np.asarray(arr)
    dtype, channels = _array_layout(encoding)
    shape_ok = arr.ndim == 2 and channels == 1 or arr.ndim == 3 and arr.shape[2] == channels
    if not shape_ok or arr.dtype.kind != dtype.kind or arr.dtype.itemsize != dtype.itemsize:
        want = '(H, W)' if channels == 1 else f'(H, W, {channels})'
        raise ImageConversionError(f'{encoding} needs a {dtype.name} array of shape {want}, '
                                   f'got {arr.dtype.name} {arr.shape}')
    msg = Image(header=_header(header), encoding=encoding,
                height=arr.shape[0], width=arr.shape[1],
                step=arr.shape[1] * channels * dtype.itemsize, is_bigendian=int(_big_endian(arr)))
    _fill(msg.data, arr)
    return msg


def _header(header: Optional[Header]) -> Header:
    return header if header is not None else Header()


def _big_endian(arr: np.ndarray) -> bool:
    order = arr.dtype.byteorder
    return order == '>' or order in '=|' and _NATIVE_BIG


def _fill(data, arr: np.ndarray) -> None:
    # Extending the message's own (empty) array.array is one memcpy; assigning a new buffer
    # to the field would go through the generated setter and copy again.
    data.frombytes(memoryview(np.ascontiguousarray(arr)).cast('B'))


def scaled_camera_info(msg: CameraInfo, dst_size: Tuple[int, int],
                       header: Optional[Header] = None) -> CameraInfo:
    """Return the camera info of the image squashed to ``dst_size`` (height, width).

    The input's ROI and binning are folded into K and P (the output has neither), so the
    result describes the resized image directly. The distortion model and coefficients are
    kept as they are: they act on normalised coordinates, which a resize does not change.
    The outputs are therefore rectified exactly when the input image is, and R is copied.

    Raises:
        ValueError: the camera info has no image size.
    """
    if msg.height == 0 or msg.width == 0:
        raise ValueError(f'camera_info has no image size ({msg.width}x{msg.height})')
    roi = msg.roi
    if roi.width and roi.height:
        x0, y0, height, width = roi.x_offset, roi.y_offset, roi.height, roi.width
    else:
        x0, y0, height, width = 0, 0, msg.height, msg.width
    bx, by = max(msg.binning_x, 1), max(msg.binning_y, 1)
    # Binning by b and resizing compose into one scale of the (cropped) sensor area.
    src = (height // by * by, width // bx * bx)
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    k = shift @ np.asarray(msg.k, np.float64).reshape(3, 3)
    p = shift @ np.asarray(msg.p, np.float64).reshape(3, 4)
    k, p = processing.scale_camera_info(k, p, src, dst_size)
    return CameraInfo(header=_header(header),
                      height=int(dst_size[0]), width=int(dst_size[1]),
                      distortion_model=msg.distortion_model, d=msg.d, k=k.ravel(),
                      r=np.array(msg.r, np.float64), p=p.ravel())


def camera_info_problem(msg: CameraInfo, image_size: Tuple[int, int]) -> Optional[str]:
    """Return why ``msg`` cannot describe an image of ``image_size`` (height, width), or None.

    Refused: a camera matrix with a zero, negative or non-finite focal length or a non-finite
    principal point (an uncalibrated camera publishes K = 0), and a camera_info whose image
    size, after its ROI and binning, is not the image's. Scaling intrinsics across such a
    mismatch would need a guess about what the driver meant; a wrong K silently bends every
    point cloud built from the depth, so no camera_info is better than a wrong one.
    """
    k = np.asarray(msg.k, np.float64)
    if k.shape != (9,) or not np.isfinite(k).all():
        return f'its camera matrix K is not finite: {_short(msg.k)}'
    if k[0] <= 0 or k[4] <= 0:
        return (f'its focal lengths fx={k[0]:g}, fy={k[4]:g} are not positive (an '
                'uncalibrated camera publishes K = 0)')
    if msg.height == 0 or msg.width == 0:
        return f'it has no image size ({msg.width}x{msg.height})'
    roi = msg.roi
    height, width = (roi.height, roi.width) if roi.width and roi.height else (msg.height,
                                                                              msg.width)
    expected = (height // max(msg.binning_y, 1), width // max(msg.binning_x, 1))
    if tuple(expected) != tuple(image_size):
        return (f'it describes a {expected[1]}x{expected[0]} image (size, ROI and binning) '
                f'but the frame is {image_size[1]}x{image_size[0]}')
    return None


def _short(values) -> str:
    return '[' + ', '.join(f'{v:g}' for v in list(values)[:9]) + ']'


def points_to_cloud(points: np.ndarray, header: Optional[Header] = None,
                    rgb: Optional[np.ndarray] = None) -> PointCloud2:
    """Build an organised PointCloud2 (height H, width W) from (H, W, 3) float32 XYZ.

    Fields are x, y, z as float32 at offsets 0, 4, 8, plus ``rgb`` at 12 when colours are
    given: (H, W, 3) uint8 packed as 0x00RRGGBB in the bits of a float32 (the PCL and RViz
    convention). NaN points stay in place, so ``is_dense`` is False.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3 or points.dtype != np.float32:
        raise ValueError(f'points must be (H, W, 3) float32, got {points.dtype} {points.shape}')
    h, w = points.shape[:2]
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate('xyz')]
    data = points
    if rgb is not None:
        if rgb.shape != points.shape or rgb.dtype != np.uint8:
            raise ValueError(f'rgb must be ({h}, {w}, 3) uint8, got {rgb.dtype} {rgb.shape}')
        data = np.empty((h, w, 4), np.float32)
        data[..., :3] = points
        packed = data.view(np.uint32)[..., 3]
        packed[...] = rgb[..., 0].astype(np.uint32) << 16
        packed |= rgb[..., 1].astype(np.uint32) << 8
        packed |= rgb[..., 2]
        fields.append(PointField(name='rgb', offset=12, datatype=PointField.FLOAT32, count=1))
    point_step = 4 * data.shape[2]
    msg = PointCloud2(header=_header(header), height=h, width=w,
                      fields=fields, is_bigendian=_NATIVE_BIG, point_step=point_step,
                      row_step=w * point_step, is_dense=False)
    _fill(msg.data, data)
    return msg
