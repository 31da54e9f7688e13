# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Small recorded bags for the tests: synthetic frames from two cameras, in either storage.

Written with rosbags (as a recorder would write them) from rclpy messages, so the bytes are
real CDR; ``front`` records rgb8, bgr8 and mono8 frames plus its camera_info, ``rear``
records JPEG CompressedImage frames and one frame in an encoding the node does not read.
"""
import io
import pathlib
from typing import Dict, List, NamedTuple

import numpy as np
from PIL import Image as PILImage
from ros_helpers import camera_info
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import CompressedImage

from tipsv2_ros.ros import bag_types, conversions

FRONT, FRONT_INFO = '/front/image_raw', '/front/camera_info'
REAR = '/rear/image_raw/compressed'
OTHER = '/odom_text'
T0 = 1_700_000_000 * 10**9


class Recorded(NamedTuple):
    path: pathlib.Path
    frames: Dict[str, List]       # topic -> the messages written, in order
    times: Dict[str, List[int]]   # topic -> their receive times (ns)


def frame(height: int, width: int, seed: int) -> np.ndarray:
    """Return a random uint8 RGB frame with some structure (a bright square)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 200, (height, width, 3), dtype=np.uint8)
    rgb[height // 4:height // 2, width // 4:width // 2] = 250
    return rgb


def _image(rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    if encoding == 'bgr8':
        array = np.ascontiguousarray(rgb[..., ::-1])
    elif encoding == 'mono8':
        array = np.ascontiguousarray(rgb[..., 1])
    else:
        array = rgb
    msg = conversions.array_to_image(array, encoding)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    return msg


def _jpeg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> CompressedImage:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format='JPEG', quality=90)
    msg = CompressedImage(format='rgb8; jpeg compressed bgr8', data=buffer.getvalue())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id = frame_id
    return msg


def write_bag(path, storage: str = 'mcap', front_frames: int = 6, rear_frames: int = 3,
              size=(60, 80)) -> Recorded:
    """Record two cameras (and a non-image topic) into a new bag folder ``path``."""
    plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]
    store = bag_types.typestore()
    writer = Writer(path, version=9, storage_plugin=plugin)
    writer.open()
    conns = {FRONT: writer.add_connection(FRONT, bag_types.IMAGE, typestore=store),
             FRONT_INFO: writer.add_connection(FRONT_INFO, bag_types.CAMERA_INFO,
                                               typestore=store),
             REAR: writer.add_connection(REAR, bag_types.COMPRESSED_IMAGE, typestore=store),
             OTHER: writer.add_connection(OTHER, 'std_msgs/msg/String', typestore=store)}
    frames: Dict[str, List] = {t: [] for t in conns}
    times: Dict[str, List[int]] = {t: [] for t in conns}

    def put(topic, time_ns, msg):
        writer.write(conns[topic], time_ns, bag_types.serialize(msg))
        frames[topic].append(msg)
        times[topic].append(time_ns)

    h, w = size
    encodings = ['rgb8', 'bgr8', 'mono8']
    for i in range(front_frames):
        stamp = T0 + i * 100_000_000
        image = _image(frame(h, w, i), encodings[i % 3], stamp, 'front_optical')
        info = camera_info(w, h)
        info.header = image.header
        # A recorder gets image and camera_info in either order: here the info comes second.
        put(FRONT, stamp + 5_000_000, image)
        put(FRONT_INFO, stamp + 6_000_000, info)
    for i in range(rear_frames):
        stamp = T0 + i * 150_000_000 + 1_000_000
        put(REAR, stamp + 2_000_000, _jpeg(frame(48, 64, 100 + i), stamp, 'rear_optical'))
    from std_msgs.msg import String
    put(OTHER, T0 + 50_000_000, String(data='hello'))
    # One frame the node cannot read (a depth camera's 32FC1) on the front topic.
    bad = conversions.array_to_image(np.ones((h, w), np.float32), '32FC1')
    bad.header.stamp.sec, bad.header.stamp.nanosec = divmod(T0 + 10**9, 10**9)
    bad.header.frame_id = 'front_optical'
    put(FRONT, T0 + 10**9 + 5_000_000, bad)
    writer.close()
    return Recorded(pathlib.Path(path), frames, times)
