# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Message types in recorded bags: full definitions for the files, rclpy classes for the path.

A bag names each topic's type and carries its definition text (``ros2msg``, with every
dependency) and type hash, so that readers without this package (Foxglove, ``mcap``,
``ros2 bag`` on another machine) decode every topic. The definitions come from the
``rosbags`` type store of ROS 2 Kilted, plus ``tipsv2_ros/msg/LabelInfo`` read from this
package's own .msg file. Messages themselves are (de)serialised by rclpy, so a frame read
from a bag is the ``sensor_msgs/Image`` the node receives and an output written is,
byte for byte, the CDR message the node publishes.
"""
import functools
import os

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.typesys import get_types_from_msg, get_typestore, Stores
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from tipsv2_ros.msg import LabelInfo

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
POINT_CLOUD = 'sensor_msgs/msg/PointCloud2'
LABEL_INFO = 'tipsv2_ros/msg/LabelInfo'
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

CLASSES = {IMAGE: Image, COMPRESSED_IMAGE: CompressedImage, CAMERA_INFO: CameraInfo,
           POINT_CLOUD: PointCloud2, LABEL_INFO: LabelInfo}

# The type of each output topic (by its name under the camera prefix).
OUTPUT_TYPES = {'depth/camera_info': CAMERA_INFO, 'depth/points': POINT_CLOUD,
                'segmentation/label_info': LABEL_INFO}


def output_type(name: str) -> str:
    """Return the message type of the output topic ``name`` (e.g. 'depth/image')."""
    return OUTPUT_TYPES.get(name, IMAGE)


def label_info_definition() -> str:
    """Return the text of LabelInfo.msg: the installed share, else the source tree."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    candidates = [os.path.join(p, 'share', 'tipsv2_ros', 'msg', 'LabelInfo.msg')
                  for p in prefixes]
    candidates.append(os.path.join(os.path.dirname(__file__), '..', '..', 'msg',
                                   'LabelInfo.msg'))
    for path in candidates:
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as definition:
                return definition.read()
    raise FileNotFoundError('LabelInfo.msg not found in the tipsv2_ros share folder '
                            f'({", ".join(candidates)})')


@functools.lru_cache(maxsize=1)
def typestore():
    """Return the rosbags type store: ROS 2 Kilted's types plus tipsv2_ros/msg/LabelInfo."""
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(label_info_definition(), LABEL_INFO))
    return store


def is_known(msgtype: str) -> bool:
    """Whether the type store can write a complete definition of ``msgtype``."""
    return msgtype in typestore().fielddefs


def serialize(msg) -> bytes:
    """Return the CDR bytes of an rclpy message (as the node would send it)."""
    return serialize_message(msg)


def deserialize(data: bytes, msgtype: str):
    """Return the rclpy message of ``msgtype`` (one of CLASSES) from its CDR bytes."""
    return deserialize_message(data, CLASSES[msgtype])
