# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""One camera's topics: the input subscriptions, the latest-frame slot and the outputs.

Topic names are relative, so namespaces and remaps apply; with several cameras each one's
topics live under its own prefix (``front/image`` -> ``front/depth/image``...).
"""
import threading
from typing import Callable, FrozenSet, Iterator, List, Optional, Tuple

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from tipsv2_ros.msg import LabelInfo
from tipsv2_ros.ros import compressed, conversions
from tipsv2_ros.runtime.frame import colour, processing
from tipsv2_ros.runtime.frame.labels import LabelSet
from tipsv2_ros.runtime.frame.pipeline import FrameResult
from tipsv2_ros.tasks import REGISTRY

try:  # what the Nav2 semantic segmentation layer reads; not in the PyPI wheels
    from vision_msgs.msg import LabelInfo as VisionLabelInfo, VisionClass
except ImportError:
    VisionLabelInfo = None

OUTPUT_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


# Publishers and subscriptions take the standard qos_overrides.<topic>.{publisher,subscription}
# .{history,depth,reliability} parameters.
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()


def qos_copy(qos: QoSProfile) -> QoSProfile:
    """Return a copy of ``qos``: rclpy writes the overrides into the profile it is given."""
    return QoSProfile(history=qos.history, depth=qos.depth, reliability=qos.reliability,
                      durability=qos.durability)


def output_arrays(result: FrameResult, frame: np.ndarray, view_max: float,
                  wanted: Callable[[str], bool]) -> List[Tuple[str, np.ndarray, str]]:
    """Return (topic, array, encoding) of the image outputs ``wanted`` names, for one frame.

    Colour views are computed only for the topics wanted. Shared with the benchmark, so it
    times the node's own outputs.
    """
    out = []
    labels = len(result.label_set.names) if result.label_set is not None else 0

    def background():
        return processing.resize_rgb(frame, result.size)
    for spec in REGISTRY:
        for topic in spec.topics:
            array = result.arrays.get(topic.array)
            if array is None or not topic.encoding or not wanted(topic.name):
                continue
            if topic.view:
                array = colour.VIEWS[topic.view](array, labels, background, view_max)
            out.append((topic.name, array, topic.encoding))
    return out


def cloud_message(result: FrameResult, frame: np.ndarray, header, scaled_info: CameraInfo,
                  semantic: bool) -> PointCloud2:
    """Return depth/points for one frame: organised, pixel for pixel with the label image.

    Back-projected through P as depth_image_proc and image_geometry do (K when P is unset,
    `processing.projection_matrix`), from ``scaled_info`` (the published depth/camera_info).
    ``semantic`` adds rgb (the frame at the output size), label and confidence; the layout
    does not depend on what ran: a frame without segmentation gets label 255, confidence 0.
    """
    points = processing.depth_to_points(
        result.depth, processing.projection_matrix(scaled_info.k, scaled_info.p))
    if not semantic:
        return conversions.points_to_cloud(points, header)
    rgb = processing.resize_rgb(frame, result.size)
    if result.labels is None:
        labels = np.full(result.size, 255, np.uint8)
        confidence = np.zeros(result.size, np.float32)
    else:
        labels = result.labels
        confidence = result.confidence.astype(np.float32) * np.float32(1 / 255)
    return conversions.points_to_cloud(points, header, rgb, labels, confidence)


def frame_messages(result: FrameResult, msg: Image, frame: np.ndarray, view_max: float,
                   wanted: Callable[[str], bool], camera_info: Optional[CameraInfo], warn,
                   prefix: str = '', semantic: bool = False) -> Iterator[Tuple[str, object]]:
    """Yield (topic, message) of every output of one frame, in publishing order.

    The header of ``msg`` is copied on every output. depth/camera_info (and depth/points when
    ``wanted``: `cloud_message`, ``semantic`` as there) come with the depth when
    ``camera_info`` describes the frame; a bad one costs this frame those two, never the
    depth image itself, and never a wrong K (see `conversions.camera_info_problem`); ``warn``
    gets the reason. Shared by the node and ``tipsv2 bag``, so a recorded output is the
    message the node publishes.
    """
    header = msg.header
    for name, array, encoding in output_arrays(result, frame, view_max, wanted):
        yield name, conversions.array_to_image(array, encoding, header)
    if result.depth is None or camera_info is None:
        return
    # The decoded frame's size: a CompressedImage message has no width or height.
    problem = conversions.camera_info_problem(camera_info, frame.shape[:2])
    if problem:
        warn(f'{prefix or "camera"}: camera_info not usable, so no depth/camera_info or '
             f'depth/points for this frame: {problem}')
        return
    scaled = conversions.scaled_camera_info(camera_info, result.size, header)
    yield 'depth/camera_info', scaled
    if wanted('depth/points'):
        yield 'depth/points', cloud_message(result, frame, header, scaled, semantic)


def label_info_message(label_set: LabelSet, threshold: float, stamp) -> LabelInfo:
    """Return the segmentation/label_info message of ``label_set``."""
    msg = LabelInfo()
    msg.header.stamp = stamp
    msg.class_ids = list(range(len(label_set.names)))
    msg.class_names = list(label_set.names)
    msg.threshold = float(threshold)
    msg.templates = list(label_set.templates)
    msg.generation = label_set.generation
    return msg


class CameraIO:
    """Subscriptions, publishers and the latest unprocessed frame of one camera."""

    def __init__(self, node: Node, prefix: str, on_frame, publish_points: bool,
                 semantic_points: bool = False):
        self.prefix = prefix
        # depth/points carries rgb, label and confidence too (a fixed layout, whatever runs).
        self.semantic_points = publish_points and semantic_points
        self._node = node
        self._on_frame = on_frame
        self._lock = threading.Lock()
        self._pending: Optional[Image] = None
        self.camera_info: Optional[CameraInfo] = None
        self.received = self.dropped = 0
        self.last_stamp_ns = -1
        self._topic = (lambda name: f'{prefix}/{name}') if prefix else (lambda name: name)
        topic = self._topic
        self.image_topic = node.resolve_topic_name(topic('image'))
        self.input_topic = self.image_topic
        self._subs = []

        def publisher(msg_type, name, qos):
            return node.create_publisher(msg_type, topic(name), qos_copy(qos),
                                         qos_overriding_options=QOS_OVERRIDES)
        self.pubs = {t.name: publisher(Image, t.name, OUTPUT_QOS)
                     for spec in REGISTRY for t in spec.topics if t.encoding}
        self.info_pub = publisher(CameraInfo, 'depth/camera_info', OUTPUT_QOS)
        if publish_points:
            self.pubs['depth/points'] = publisher(PointCloud2, 'depth/points', OUTPUT_QOS)
        self.label_pub = publisher(LabelInfo, 'segmentation/label_info', LATCHED_QOS)
        self.ade20k_label_pub = publisher(LabelInfo, 'ade20k/label_info', LATCHED_QOS)
        self.vision_label_pub = None
        if VisionLabelInfo is not None:
            self.vision_label_pub = publisher(VisionLabelInfo,
                                              'segmentation/vision_label_info', LATCHED_QOS)

    def subscribe(self, input_qos: QoSProfile, transport: str) -> None:
        """Subscribe to the frames (``image`` or ``image/compressed``) and camera_info."""
        # Like image_transport: the transport's suffix goes on the resolved (remapped) name.
        topic, msg_type = compressed.input_topic(self.image_topic, transport)
        self.input_topic = topic

        def on_image(msg):
            with self._lock:
                if self._pending is not None:
                    self.dropped += 1  # latest frame wins; no queue ever grows
                self._pending = msg
                self.received += 1
            self._on_frame()

        self._subs = [
            self._node.create_subscription(msg_type, topic, on_image, qos_copy(input_qos),
                                           qos_overriding_options=QOS_OVERRIDES),
            self._node.create_subscription(CameraInfo, self._topic('camera_info'),
                                           self._on_info, qos_copy(input_qos),
                                           qos_overriding_options=QOS_OVERRIDES),
        ]

    def unsubscribe(self) -> None:
        """Stop receiving frames; a frame received but not yet processed is let go."""
        for entity in self._subs:
            self._node.destroy_subscription(entity)
        self._subs = []
        with self._lock:
            self._pending = None

    @property
    def input_qos(self) -> Optional[QoSProfile]:
        """The QoS the frame subscription got (overrides applied); None when not subscribed."""
        subs = self._subs  # one read: a transition may replace the list meanwhile
        return subs[0].qos_profile if subs else None

    def _on_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def take(self) -> Optional[Image]:
        """Return and clear the latest unprocessed frame."""
        with self._lock:
            msg, self._pending = self._pending, None
        return msg

    def has_frame(self) -> bool:
        return self._pending is not None

    def wanted_tasks(self, enabled: FrozenSet[str]) -> FrozenSet[str]:
        """Return the enabled tasks whose outputs someone subscribes to right now."""
        wanted = frozenset(task for task in enabled if any(
            t.name in self.pubs and self.pubs[t.name].get_subscription_count() > 0
            for t in REGISTRY[task].topics))
        if self.semantic_points and 'segmentation' in enabled and self._wanted('depth/points'):
            wanted |= {'segmentation'}  # the semantic cloud's labels
        return wanted

    def publishers_of_input(self) -> int:
        return self._node.count_publishers(self.input_topic)

    def _wanted(self, name: str) -> bool:
        pub = self.pubs.get(name)
        return pub is not None and pub.get_subscription_count() > 0

    def publish(self, result: FrameResult, msg: Image, frame: np.ndarray,
                view_max: float, warn) -> None:
        """Publish ``result`` for the frame ``msg`` (header copied on every output)."""
        for name, out in frame_messages(result, msg, frame, view_max, self._wanted,
                                        self.camera_info, warn, self.prefix,
                                        self.semantic_points):
            (self.info_pub if name == 'depth/camera_info' else self.pubs[name]).publish(out)

    def publish_labels(self, label_set: LabelSet, threshold: float, stamp) -> None:
        """Publish the latched label info (and vision_msgs/LabelInfo when available)."""
        self.label_pub.publish(label_info_message(label_set, threshold, stamp))
        if self.vision_label_pub is not None:
            vmsg = VisionLabelInfo()
            vmsg.header.stamp = stamp
            vmsg.class_map = [VisionClass(class_id=i, class_name=name)
                              for i, name in enumerate(label_set.names)]
            vmsg.threshold = float(threshold)
            self.vision_label_pub.publish(vmsg)

    def publish_ade20k_info(self, class_names, stamp) -> None:
        """Publish the latched ADE20K class list (fixed: generation 0, no templates)."""
        msg = LabelInfo()
        msg.header.stamp = stamp
        msg.class_ids = list(range(len(class_names)))
        msg.class_names = list(class_names)
        self.ade20k_label_pub.publish(msg)

    def destroy(self) -> None:
        self.unsubscribe()
        for pub in [*self.pubs.values(), self.info_pub, self.label_pub,
                    self.ade20k_label_pub, self.vision_label_pub]:
            if pub is not None:
                self._node.destroy_publisher(pub)
