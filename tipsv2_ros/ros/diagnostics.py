# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The node's health on ``/diagnostics``, where robots aggregate it (diagnostic_msgs).

One `DiagnosticStatus` per second, named ``<namespace>/<node>: perception`` like
diagnostic_updater's ``<node>: <task>``: ERROR when configuring failed, frames fail in the
backend or Triton is unreachable; WARN when the node is not active, no frame arrived for
``warn_after`` seconds (with the cause: no publisher, wrong transport, QoS mismatch), frames
were bad or dropped, or a backend fallback is in use; OK otherwise. The message lists every
reason, most severe first; the values carry the counters behind them.
"""
import collections
import time
from typing import List, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from tipsv2_ros.ros import input_watch

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
WINDOW = 5.0  # seconds over which drops, bad frames and errors count as current
# Backend log lines (runtime.backends, the TensorRT gate) that mean a fallback is in use.
FALLBACK_MARKERS = ('falling back', 'is not usable', 'without TensorRT')


def is_fallback(line: str) -> bool:
    return any(marker in line for marker in FALLBACK_MARKERS)


class Diagnostics:
    """Publishes the node's DiagnosticArray at 1 Hz (from construction on, in every state).

    Reads the node's ``state``, ``config_error``, ``fallbacks``, ``last_error``,
    ``last_bad_frame``, ``stats``, ``cameras``, ``runtime``, ``params`` and
    ``last_frame_time``.
    """

    def __init__(self, node, period: float = 1.0):
        self._node = node
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._history = collections.deque()  # (monotonic time, counters)
        # Its own group: the status keeps coming while a transition loads the model.
        node.create_timer(period, self.publish, callback_group=MutuallyExclusiveCallbackGroup())

    def publish(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        try:
            msg.status = [self.status()]
        except Exception as error:  # e.g. a graph query on a context shutting down
            self._node.get_logger().debug(f'diagnostics skipped a beat: {error!r}')
            return
        self._pub.publish(msg)

    def _counters(self) -> dict:
        node = self._node
        return {'received': sum(c.received for c in node.cameras),
                'dropped': sum(c.dropped for c in node.cameras),
                'processed': node.stats['frames_processed'],
                'bad_frames': node.stats['bad_frames'], 'errors': node.stats['errors']}

    def _window(self) -> Tuple[dict, dict, float]:
        """Return (counters now, their increase over the window, the window's seconds)."""
        now, counters = time.monotonic(), self._counters()
        self._history.append((now, counters))
        while len(self._history) > 1 and now - self._history[1][0] >= WINDOW:
            self._history.popleft()
        then, old = self._history[0]
        delta = {k: v - old.get(k, 0) for k, v in counters.items()}
        return counters, delta, max(now - then, 1e-3)

    def status(self) -> DiagnosticStatus:
        node = self._node
        runtime, label_set = node.runtime, node.labels  # one read each: transitions run
        counters, delta, seconds = self._window()
        reasons: List[Tuple[bytes, str]] = []
        state = node.state
        if node.config_error:
            reasons.append((ERROR, f'configure failed: {node.config_error}'))
        if state != 'active':
            reasons.append((WARN, f'{state}: not processing frames'))
        else:
            reasons += self._active_reasons(delta)
        for line in node.fallbacks:
            reasons.append((WARN, f'fallback active: {line}'))
        level = max((lvl for lvl, _ in reasons), default=OK)
        reasons.sort(key=lambda r: r[0], reverse=True)
        message = '; '.join(text for _, text in reasons) or (
            f'processing {delta["processed"] / seconds:.1f} frames/s')
        values = {'state': state, 'frames_received': counters['received'],
                  'frames_processed': counters['processed'],
                  'frames_dropped': counters['dropped'], 'bad_frames': counters['bad_frames'],
                  'errors': counters['errors'],
                  'frames_per_second': f'{delta["processed"] / seconds:.2f}',
                  'last_latency_ms': node.stats.get('last_latency_ms'),
                  'input_topics': ', '.join(c.input_topic for c in node.cameras),
                  'image_transport': node.params['image_transport'],
                  'backend': runtime.backend.describe() if runtime else 'none',
                  'labels': len(label_set.names) if label_set else 0,
                  'label_generation': node.stats.get('label_generation'),
                  'last_error': node.last_error or ''}
        return DiagnosticStatus(
            level=level, name=f'{node.get_fully_qualified_name().lstrip("/")}: perception',
            message=message[:1000], hardware_id=node.params['device'],
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def _active_reasons(self, delta: dict) -> List[Tuple[bytes, str]]:
        node, reasons, runtime = self._node, [], self._node.runtime
        backend = runtime.backend if runtime else None
        if backend is not None and getattr(backend, 'connected', True) is False:
            reasons.append((ERROR, f'Triton unreachable at {node.params["triton.url"]}'))
        if delta['errors']:
            reasons.append((ERROR, f'{delta["errors"]} errors in the last {WINDOW:.0f} s: '
                            f'{node.last_error}'))
        idle = time.monotonic() - node.last_frame_time
        if idle >= node.params['warn_after']:
            causes = '; '.join(input_watch.why_no_frames(node, c.image_topic,
                                                         node.params['image_transport'],
                                                         c.input_qos) for c in node.cameras)
            reasons.append((WARN, f'no frames for {idle:.0f} s: {causes}'))
        if delta['bad_frames']:
            reasons.append((WARN, f'{delta["bad_frames"]} bad frames in the last '
                            f'{WINDOW:.0f} s: {node.last_bad_frame}'))
        if delta['dropped'] and node.params['max_rate'] <= 0:
            reasons.append((WARN, f'{delta["dropped"]} of {delta["received"]} frames dropped '
                            f'in the last {WINDOW:.0f} s: inference is slower than the camera '
                            '(set max_rate to drop on purpose, or use a faster backend)'))
        return reasons
