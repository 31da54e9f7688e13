# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""A small player node: publishes frames to the perception node and collects its outputs.

Used by ``tipsv2 demo`` (``play_to_node``: the node as its own process, as ``ros2 run``
starts it) to exercise the node over real DDS the way a camera driver and a consumer would.
Frames go one at a time: the next frame is sent when every output of the previous one
arrived (or a timeout passed), so none is dropped.
"""
import subprocess
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from tipsv2_ros.msg import LabelInfo
from tipsv2_ros.ros import conversions, processes
from tipsv2_ros.tasks import REGISTRY

# Each default task's first array -> the topic that carries it raw (depth/image,
# normals/image, segmentation/labels): what the player waits for.
OUTPUTS = {spec.arrays[0]: next(t.name for t in spec.topics if t.array == spec.arrays[0]
                                and t.encoding and not t.view)
           for spec in REGISTRY if spec.name in REGISTRY.defaults() and spec.topics}


def spin_until(node: Node, done: Callable[[], bool], timeout: float) -> bool:
    """Spin ``node`` until ``done()`` or ``timeout`` seconds; return ``done()``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if done():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return done()


class Received(NamedTuple):
    """The outputs of one frame, as numpy arrays, and when they arrived."""

    stamp_ns: int
    sent: float
    arrays: Dict[str, np.ndarray]
    done: float
    index: int = 0  # of the frame in the played sequence (frames without outputs are skipped)


class Player(Node):
    """Publishes ``image``/``camera_info`` and subscribes to the node's outputs.

    Args:
        namespace: where the perception node's topics live (e.g. '/tipsv2').
        outputs: the output keys of ``OUTPUTS`` to wait for.
    """

    def __init__(self, namespace: str = '/', outputs: Sequence[str] = tuple(OUTPUTS)):
        super().__init__('tipsv2_player')
        ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
        self._outputs = tuple(outputs)
        self._image_pub = self.create_publisher(Image, f'{ns}/image', 1)
        self._info_pub = self.create_publisher(CameraInfo, f'{ns}/camera_info', 1)
        self._inbox: Dict[int, Dict[str, np.ndarray]] = {}
        self.labels: Optional[LabelInfo] = None
        for key in self._outputs:
            self.create_subscription(Image, f'{ns}/{OUTPUTS[key]}',
                                     lambda msg, key=key: self._on_output(key, msg), 2)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(LabelInfo, f'{ns}/segmentation/label_info',
                                 self._on_labels, latched)

    def _on_output(self, key: str, msg: Image) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self._inbox.setdefault(stamp, {})[key] = conversions.image_to_array(msg).copy()

    def _on_labels(self, msg: LabelInfo) -> None:
        self.labels = msg

    def _spin_until(self, done, timeout: float) -> bool:
        return spin_until(self, done, timeout)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the node subscribes to our frames and its outputs are matched."""
        def ready():
            return (self._image_pub.get_subscription_count() > 0
                    and self.labels is not None
                    and all(self.count_publishers(s.topic_name) > 0
                            for s in self.subscriptions))
        return self._spin_until(ready, timeout)

    def play(self, frames: Sequence[np.ndarray], info: Optional[CameraInfo],
             frame_id: str = 'camera_optical_frame', timeout: float = 120.0) -> List[Received]:
        """Send each RGB frame and collect its outputs; frames without outputs are skipped."""
        received = []
        for index, frame in enumerate(frames):
            now = self.get_clock().now()
            msg = conversions.array_to_image(frame, 'rgb8', None)
            msg.header.stamp = now.to_msg()
            msg.header.frame_id = frame_id
            stamp = now.nanoseconds
            if info is not None:
                info.header = msg.header
                self._info_pub.publish(info)
            sent = time.perf_counter()
            self._image_pub.publish(msg)
            complete = self._spin_until(
                lambda: len(self._inbox.get(stamp, {})) == len(self._outputs), timeout)
            if complete:
                received.append(Received(stamp, sent, self._inbox.pop(stamp),
                                         time.perf_counter(), index))
            self._inbox.clear()
        return received


def camera_info_from(intrinsics: Dict[str, float], frame_id: str) -> CameraInfo:
    """Return a pinhole CameraInfo from {'width', 'height', 'fx', 'fy', 'cx', 'cy'}."""
    info = CameraInfo()
    info.header.frame_id = frame_id
    info.width, info.height = int(intrinsics['width']), int(intrinsics['height'])
    fx, fy, cx, cy = (float(intrinsics[k]) for k in ('fx', 'fy', 'cx', 'cy'))
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class Session(NamedTuple):
    """What ``play_to_node`` got: the node's labels, the outputs per frame, the wall time."""

    labels: List[str]
    received: List[Received]
    seconds: float


def play_to_node(params: Dict[str, object], namespace: str, frames: Sequence[np.ndarray],
                 intrinsics: Dict[str, float], timeout: float) -> Session:
    """Start the node as its own process, play ``frames`` to it, stop it.

    Raises:
        RuntimeError: the node did not become ready within ``timeout`` seconds.
    """
    node = subprocess.Popen(processes.node_command(params, namespace))
    rclpy.init()
    player = Player(namespace)
    try:
        print('[demo] waiting for the node to load the model...', flush=True)
        if not player.wait_ready(timeout) or node.poll() is not None:
            raise RuntimeError('the node did not start (see its messages above)')
        names = list(player.labels.class_names)
        start = time.perf_counter()
        received = player.play(frames, camera_info_from(intrinsics, 'camera_optical_frame'))
        return Session(names, received, time.perf_counter() - start)
    finally:
        player.destroy_node()
        rclpy.try_shutdown()
        processes.stop(node)
