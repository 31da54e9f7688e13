# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Why no frame arrives: no publisher, the wrong message type (transport), or a QoS mismatch.

Read from the ROS graph (the publishers' types and QoS on the topic the node subscribes to,
and on the other transport's topic), so the warning and /diagnostics name the actual cause
and its fix instead of guessing.
"""
from typing import Optional

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from tipsv2_ros.ros import compressed

_TYPE_NAMES = {'raw': 'sensor_msgs/msg/Image', 'compressed': 'sensor_msgs/msg/CompressedImage'}


def why_no_frames(node, image_topic: str, transport: str,
                  qos: Optional[QoSProfile]) -> str:
    """Explain why the frame subscription of ``image_topic`` receives nothing.

    Args:
        node: the node (for graph queries).
        image_topic: the resolved ``image`` topic (without a transport suffix).
        transport: 'raw' or 'compressed', the node's image_transport.
        qos: the QoS the frame subscription got.
    """
    topic, _ = compressed.input_topic(image_topic, transport)
    wanted = _TYPE_NAMES[transport]
    publishers = node.get_publishers_info_by_topic(topic)
    if not publishers:
        other = 'compressed' if transport == 'raw' else 'raw'
        other_topic, _ = compressed.input_topic(image_topic, other)
        if any(p.topic_type == _TYPE_NAMES[other]
               for p in node.get_publishers_info_by_topic(other_topic)):
            return (f'no publisher on {topic}, but {other_topic} has one: a transport '
                    f'mismatch; set image_transport: {other}')
        return f'no publisher on {topic}'
    others = sorted({p.topic_type for p in publishers} - {wanted})
    if others:
        hint = ('image_transport: compressed (the node then subscribes to <image>/compressed)'
                if 'sensor_msgs/msg/CompressedImage' in others else 'a topic of that type')
        return (f'{topic} is published as {", ".join(others)} but this node subscribes to '
                f'{wanted}: a type mismatch, not a QoS one; set {hint}')
    if qos is None:
        return f'{topic} has a publisher; the node is not subscribed (not active)'
    override = f'qos_overrides.{topic}.subscription.reliability'
    if qos.reliability == ReliabilityPolicy.RELIABLE and all(
            p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in publishers):
        return (f'{topic} is published best_effort but this node subscribes reliable: a QoS '
                f'mismatch; set {override}: best_effort (or qos.reliability: best_effort)')
    if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL and all(
            p.qos_profile.durability == DurabilityPolicy.VOLATILE for p in publishers):
        return (f'{topic} is published volatile but this node subscribes transient_local: a '
                'QoS mismatch')
    return (f'{topic} has {len(publishers)} publisher(s) of {wanted} with compatible QoS, '
            'but no frame arrived: the camera may not be publishing (lazy driver?) or frames '
            'are lost on the way (large frames over best_effort: try '
            f'{override}: reliable)')
