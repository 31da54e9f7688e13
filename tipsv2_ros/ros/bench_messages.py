# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The message stages of ``tipsv2 bench``: decoding, building and publishing, in process.

Apart from `bench_e2e` (the node as its own process) because these rows need no node: they
time the conversions the node runs on each frame, on the same frame and outputs, with a
subscriber in this process, so DDS delivers without a network.
"""
import time
from typing import List

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo

from tipsv2_ros.bench.table import Row, SECTIONS
from tipsv2_ros.bench.timing import measure
from tipsv2_ros.ros import conversions, image_decode
from tipsv2_ros.ros.camera_io import cloud_message, output_arrays

# Its own namespace, next to bench_e2e's '/tipsv2_bench', so no node output is mixed in.
NAMESPACE = '/tipsv2_bench_messages'


def message_stages(result, frame: np.ndarray, iterations: int, warmup: int,
                   info: CameraInfo) -> List[Row]:
    """Image -> array, building the output messages, publishing them (this process)."""
    node = Node('tipsv2_bench_messages')
    try:
        incoming = conversions.array_to_image(frame, 'rgb8', None)
        arrays = [(a, enc) for _, a, enc in output_arrays(result, frame, 10.0, lambda name: True)]

        def build():
            msgs = [conversions.array_to_image(a, enc, incoming.header) for a, enc in arrays]
            msgs.append(conversions.scaled_camera_info(info, result.size, incoming.header))
            return msgs
        built = build()
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        pubs = [node.create_publisher(type(m), f'{NAMESPACE}/out{i}', qos)
                for i, m in enumerate(built)]
        subs = [node.create_subscription(type(m), f'{NAMESPACE}/out{i}',
                                         lambda msg: None, qos) for i, m in enumerate(built)]
        for pub in pubs:  # one matched subscriber each, as the node has with a consumer
            end = time.monotonic() + 5.0
            while pub.get_subscription_count() == 0 and time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.01)

        def publish():
            for pub, msg in zip(pubs, built):
                pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0)
        size = f'{frame.shape[1]}x{frame.shape[0]}'
        rows = [
            Row.timing(SECTIONS[0], f'message to array (rgb8 {size} Image -> numpy view)',
                       measure(lambda: image_decode.image_to_rgb(incoming), iterations, warmup)),
            Row.timing(SECTIONS[0], f'message creation ({len(built)} messages)',
                       measure(build, iterations, warmup)),
            Row.timing(SECTIONS[0], f'publish ({len(built)} messages, 1 subscriber each)',
                       measure(publish, iterations, warmup),
                       note='subscriber in this process: DDS delivery, no network'),
        ]
        del subs
        return rows + semantic_cloud(result, frame, incoming.header, info, iterations, warmup)
    finally:
        node.destroy_node()


def semantic_cloud(result, frame: np.ndarray, header, info: CameraInfo, iterations: int,
                   warmup: int) -> List[Row]:
    """depth/points with rgb, label and confidence (publish_points): build time and size."""
    names = ('semantic point cloud creation (depth/points with rgb, label, confidence)',
             'semantic point cloud: bytes per frame')
    if result.depth is None or result.labels is None:
        why = 'needs the depth and segmentation tasks'
        return [Row.skipped(SECTIONS[0], names[0], why), Row.skipped(SECTIONS[2], names[1], why)]
    scaled = conversions.scaled_camera_info(info, result.size, header)
    msg = cloud_message(result, frame, header, scaled, True)
    size = len(serialize_message(msg))
    return [Row.timing(SECTIONS[0], names[0], measure(
                lambda: cloud_message(result, frame, header, scaled, True), iterations, warmup)),
            Row(SECTIONS[2], names[1], value=f'{size / 1e6:.2f} MB',
                note=f'serialized; organised {msg.width}x{msg.height}, {msg.point_step} bytes a '
                'point (x y z, rgb, label, confidence; depth_image_proc xyzrgb layout); on top '
                'of P7 when publish_points is on')]
