# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""numpy -> sensor_msgs without cv_bridge: output images, scaled camera info, PointCloud2.

Also `image_to_array`, the inverse of `array_to_image`, for reading outputs back. Incoming
camera frames are decoded to RGB in `image_decode`. Outgoing arrays are written into
``msg.data`` with a single memcpy: ``array.array.frombytes`` of a byte memoryview. Assigning
``bytes`` or a list to ``Image.data`` instead costs a second copy, or an element-wise check
when ``ROS_PYTHON_CHECK_FIELDS=1`` (rosidl_python#194).
"""
import re
import sys
from typing import Optional, Tuple

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from tipsv2_ros import processing
from tipsv2_ros.ros.image_decode import check_layout, ImageConversionError

_NATIVE_BIG = sys.byteorder == 'big'

# Encodings of `image_to_array` / `array_to_image`: (dtype, channels).
_NAMED = {'mono8': ('u1', 1), 'mono16': ('u2', 1), 'rgb8': ('u1', 3), 'bgr8': ('u1', 3),
          'rgba8': ('u1', 4), 'bgra8': ('u1', 4), 'rgb16': ('u2', 3), 'bgr16': ('u2', 3),
          'rgba16': ('u2', 4), 'bgra16': ('u2', 4)}
_CV_TYPE = re.compile(r'(8U|8S|16U|16S|32S|32F|64F)C([1-4])')


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
    check_layout(msg, channels * dtype.itemsize)
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


# Cloud layouts. xyz: depth_image_proc's point_cloud_xyz (x, y, z float32 at 0, 4, 8, padded
# to 16 bytes). With colour: its point_cloud_xyzrgb (rgb at 16, 32 bytes a point); the
# semantic fields live in that layout's padding, so any reader of it reads ours.
_CLOUD_FIELDS = {'x': (0, PointField.FLOAT32, 'f4'), 'y': (4, PointField.FLOAT32, 'f4'),
                 'z': (8, PointField.FLOAT32, 'f4'), 'rgb': (16, PointField.FLOAT32, 'u4'),
                 'label': (20, PointField.UINT8, 'u1'),
                 'confidence': (24, PointField.FLOAT32, 'f4')}


def points_to_cloud(points: np.ndarray, header: Optional[Header] = None,
                    rgb: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
                    confidence: Optional[np.ndarray] = None) -> PointCloud2:
    """Build an organised PointCloud2 (height H, width W) from (H, W, 3) float32 XYZ.

    Fields: x, y, z (float32 at 0, 4, 8; point_step 16). With ``rgb`` ((H, W, 3) uint8) also
    ``rgb`` at 16, packed as 0x00RRGGBB in the bits of a float32 (the PCL and RViz
    convention); with ``labels`` ((H, W) uint8, 255 none) and ``confidence`` ((H, W) float32)
    also ``label`` (uint8 at 20) and ``confidence`` (float32 at 24); point_step 32 with any
    of them. Padding bytes are zero. NaN points stay in place, so ``is_dense`` is False.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3 or points.dtype != np.float32:
        raise ValueError(f'points must be (H, W, 3) float32, got {points.dtype} {points.shape}')
    h, w = points.shape[:2]
    if (labels is None) != (confidence is None):
        raise ValueError('labels and confidence go together')
    for name, array, shape, dtype in (('rgb', rgb, (h, w, 3), np.uint8),
                                      ('labels', labels, (h, w), np.uint8),
                                      ('confidence', confidence, (h, w), np.float32)):
        if array is not None and (array.shape != shape or array.dtype != dtype):
            raise ValueError(f'{name} must be {shape} {np.dtype(dtype).name}, got '
                             f'{array.dtype} {array.shape}')
    names = ['x', 'y', 'z'] + ['rgb'] * (rgb is not None) + ['label', 'confidence'] * (
        labels is not None)
    point_step = 16 if len(names) == 3 else 32
    layout = np.dtype({'names': names, 'formats': [_CLOUD_FIELDS[n][2] for n in names],
                       'offsets': [_CLOUD_FIELDS[n][0] for n in names],
                       'itemsize': point_step})
    data = np.zeros((h, w), layout)
    data['x'], data['y'], data['z'] = points[..., 0], points[..., 1], points[..., 2]
    if rgb is not None:
        packed = rgb[..., 0].astype(np.uint32) << 16
        packed |= rgb[..., 1].astype(np.uint32) << 8
        packed |= rgb[..., 2]
        data['rgb'] = packed
    if labels is not None:
        data['label'], data['confidence'] = labels, confidence
    fields = [PointField(name=n, offset=_CLOUD_FIELDS[n][0], datatype=_CLOUD_FIELDS[n][1],
                         count=1) for n in names]
    msg = PointCloud2(header=_header(header), height=h, width=w,
                      fields=fields, is_bigendian=_NATIVE_BIG, point_step=point_step,
                      row_step=w * point_step, is_dense=False)
    _fill(msg.data, data.view(np.uint8))
    return msg
