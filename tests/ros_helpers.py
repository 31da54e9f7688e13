# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Helpers for tests that run the node over real DDS: a node process and a client node."""
import contextlib
import json
import signal
import subprocess
import time
from typing import Dict, Optional

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from tipsv2_ros.msg import LabelInfo
from tipsv2_ros.ros import conversions, lifecycle, player, processes
from tipsv2_ros.srv import SetLabels

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class NodeProcess:
    """The perception node as a child process, stopped with SIGINT on exit."""

    def __init__(self, params: Dict[str, object], namespace: str, extra=()):
        self.command = processes.node_command(params, namespace, extra=extra)
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.output = ''

    def stop(self, sig=signal.SIGINT, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.output += self.proc.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output += self.proc.communicate()[0]
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Client(Node):
    """Publishes frames to a perception node and records what it publishes."""

    def __init__(self, namespace: str, name: str = 'test_client', image_qos=1):
        super().__init__(name)
        self.ns = '/' + namespace.strip('/')
        self.image_pub = self.create_publisher(Image, f'{self.ns}/image', image_qos)
        self.info_pub = self.create_publisher(CameraInfo, f'{self.ns}/camera_info', 1)
        self.set_labels = self.create_client(SetLabels, f'{self.ns}/set_labels')
        self.received: Dict[str, list] = {}
        self.status: Optional[dict] = None
        self.create_subscription(String, f'{self.ns}/tipsv2_perception/status',
                                 self._on_status, 10)

    def _on_status(self, msg):
        self.status = json.loads(msg.data)

    def listen(self, topic: str, msg_type=Image, qos=10):
        """Subscribe to an output topic (relative to the node's namespace)."""
        self.received.setdefault(topic, [])
        return self.create_subscription(msg_type, f'{self.ns}/{topic}',
                                        lambda msg: self.received[topic].append(msg), qos)

    def listen_labels(self):
        return self.listen('segmentation/label_info', LabelInfo, LATCHED)

    def spin_until(self, condition, timeout: float = 30.0) -> bool:
        return player.spin_until(self, condition, timeout)

    def wait_for_node(self, timeout: float = 60.0) -> bool:
        """Wait until the node subscribes to our frames and serves set_labels."""
        return self.spin_until(lambda: self.image_pub.get_subscription_count() > 0
                               and self.set_labels.service_is_ready(), timeout)

    def send(self, frame: np.ndarray, encoding: str = 'rgb8', stamp_ns: Optional[int] = None,
             frame_id: str = 'cam', info: Optional[CameraInfo] = None) -> Image:
        msg = conversions.array_to_image(frame, encoding, None)
        stamp_ns = self.get_clock().now().nanoseconds if stamp_ns is None else stamp_ns
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        msg.header.frame_id = frame_id
        if info is not None:
            info.header = msg.header
            self.info_pub.publish(info)
        self.image_pub.publish(msg)
        return msg

    def exchange(self, frame: np.ndarray, topics, encoding: str = 'rgb8', timeout: float = 30.0,
                 **kwargs):
        """Send ``frame`` (re-sent every 0.5 s, as a camera would) until every topic answers.

        A new subscription takes a moment to be matched on the node's side, and until then
        the node skips frames nobody listens to; re-sending makes tests independent of it.

        Returns:
            (the sent message, {topic: the output message with the same stamp}).
        """
        end = time.monotonic() + timeout
        sent = []
        while time.monotonic() < end:
            sent.append(self.send(frame, encoding, **kwargs))
            stamps = {stamp_ns(m): m for m in sent}
            resend = time.monotonic() + 0.5
            while time.monotonic() < min(resend, end):
                for stamp, msg in stamps.items():
                    found = {t: next((m for m in self.received[t] if stamp_ns(m) == stamp),
                                     None) for t in topics}
                    if all(found.values()):
                        return msg, found
                rclpy.spin_once(self, timeout_sec=0.02)
        raise AssertionError(f'no outputs on {topics} within {timeout} s: '
                             f'{ {t: len(self.received[t]) for t in topics} }')

    def call_set_labels(self, labels, templates=(), timeout: float = 60.0):
        future = self.set_labels.call_async(
            SetLabels.Request(labels=list(labels), templates=list(templates)))
        assert self.spin_until(future.done, timeout), 'set_labels did not answer'
        return future.result()

    def clear(self):
        for messages in self.received.values():
            messages.clear()


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def camera_info(width: int, height: int, fx: float = 300.0, fy: float = 310.0,
                cx: Optional[float] = None, cy: Optional[float] = None) -> CameraInfo:
    info = CameraInfo()
    info.width, info.height = width, height
    cx = (width - 1) / 2 if cx is None else cx
    cy = (height - 1) / 2 if cy is None else cy
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.distortion_model = 'plumb_bob'
    info.d = [0.0] * 5
    return info


def spin_with_reporter(node, reporter, until, timeout: float = 10.0) -> bool:
    """Spin ``node`` through ``lifecycle.spin`` in a thread until ``until()``; stop it.

    Returns whether the spinning thread ended when the executor was shut down.
    """
    import threading
    from rclpy.executors import SingleThreadedExecutor
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=lifecycle.spin, args=(executor, reporter))
    thread.start()
    try:
        end = time.monotonic() + timeout
        while not until() and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        executor.shutdown()
        thread.join(10)
        node.destroy_node()
    return not thread.is_alive()


@contextlib.contextmanager
def running_node(params: Dict[str, object], namespace: str, extra=(), **client_args):
    """Yield (the node process, a Client) once the node serves; stop both after."""
    with NodeProcess(params, namespace, extra=extra) as node:
        client = Client(namespace, **client_args)
        try:
            assert client.wait_for_node(60), node.stop() or node.output
            yield node, client
        finally:
            client.destroy_node()
