# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Reading PointCloud2 messages back in tests, independently of the code that writes them.

sensor_msgs_py's ``read_points`` when it is importable (a ROS install); the PyPI ROS wheels
do not ship it, so otherwise a decoder built from the message's own PointField table (names,
offsets, datatypes, count, endianness, point_step and row_step), the way read_points does.
"""
import numpy as np

try:
    from sensor_msgs_py import point_cloud2
except ImportError:
    point_cloud2 = None

# sensor_msgs/PointField datatypes.
_TYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}


def _decode(msg) -> np.ndarray:
    order = '>' if msg.is_bigendian else '<'
    dtype = np.dtype({'names': [f.name for f in msg.fields],
                      'formats': [(order + _TYPES[f.datatype], (f.count,)) if f.count > 1
                                  else order + _TYPES[f.datatype] for f in msg.fields],
                      'offsets': [f.offset for f in msg.fields],
                      'itemsize': msg.point_step})
    raw = np.frombuffer(bytes(msg.data), np.uint8)
    assert raw.size == msg.row_step * msg.height, 'data length is not row_step x height'
    rows = raw.reshape(msg.height, msg.row_step)[:, :msg.width * msg.point_step]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)


def read_structured(msg) -> np.ndarray:
    """Return the cloud as an (H, W) structured array, one field per PointField."""
    if point_cloud2 is not None:
        points = point_cloud2.read_points(msg, skip_nans=False)
        return np.asarray(points).reshape(msg.height, msg.width)
    return _decode(msg)


def read_cloud(msg) -> dict:
    """Return {'xyz': (H, W, 3) float32, and each other field: (H, W)}."""
    cloud = read_structured(msg)
    out = {'xyz': np.stack([cloud['x'], cloud['y'], cloud['z']], -1).astype(np.float32)}
    for name in cloud.dtype.names:
        if name not in ('x', 'y', 'z'):
            out[name] = np.asarray(cloud[name]).astype(cloud[name].dtype.newbyteorder('='))
    return out


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Unpack RViz/PCL's float32 ``rgb`` (0x00RRGGBB in its bits) to (..., 3) uint8."""
    packed = np.ascontiguousarray(rgb, np.float32).view(np.uint32)
    return np.stack([packed >> 16 & 255, packed >> 8 & 255, packed & 255], -1).astype(np.uint8)
