# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The ``tipsv2_perception`` node: camera frames in; depth, normals and masks out.

A managed (lifecycle) node: `managed` holds its transitions (configure loads the model,
activate subscribes and starts inference). Threads: the executor runs the cheap callbacks
(frames go into a one-slot mailbox per camera, the set_labels service, parameters, timers);
one worker thread, while active, runs inference on the latest frames and publishes. Labels
are embedded on one text thread (the service or parameter callback waits for it), off the
frame path, and the worker adopts the new LabelSet between two frames: no frame mixes label
sets, and label info is published by the same thread as the masks, before them. Start-up,
spinning and shutdown: `lifecycle`; the set_labels service and parameter changes:
`reconfigure`; the query service, which scores text on the features the worker keeps per
camera: `query`; /diagnostics: `diagnostics`; compressed input: `compressed`.
"""
import json
import re
import threading
import time

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode
from std_msgs.msg import String

from tipsv2_ros.ros import compressed, input_watch, params as node_params
from tipsv2_ros.ros.diagnostics import Diagnostics
from tipsv2_ros.ros.managed import ManagedMixin
from tipsv2_ros.ros.reconfigure import ReconfigureMixin
from tipsv2_ros.ros.throttle import Throttle
from tipsv2_ros.runtime.frame import processing
from tipsv2_ros.runtime.frame.task_rates import TaskRates
from tipsv2_ros.tasks import REGISTRY


NODE_NAME = 'tipsv2_perception'


class PerceptionNode(ManagedMixin, ReconfigureMixin, LifecycleNode):
    """Depth, surface normals and open-vocabulary segmentation from one TIPSv2 encoder."""

    def __init__(self, runtime=None, labels=None, fallbacks=(), **kwargs):
        """Create the node, unconfigured; ``runtime`` and ``labels`` are built at configure.

        `lifecycle.main` builds them before this node exists when the node configures itself
        (``autostart``), so that a start-up failure leaves no trace in the ROS graph; the first
        configure then adopts them (and ``fallbacks``, the backend's fallback log lines).
        """
        super().__init__(NODE_NAME, **kwargs)
        node_params.declare(self)
        self.params = node_params.NodeParams.from_node(self)
        self._throttle = Throttle(self.get_logger())
        self._preloaded = (runtime, labels)
        self.runtime = self._labels = self._pending_labels = None
        self.cameras = []
        self._text = self._worker = self._set_labels_service = self.query = None
        self._task_rates = TaskRates()
        self._wake = threading.Condition()
        self._stop = True
        self.state = 'unconfigured'
        self.config_error = self.last_error = self.last_bad_frame = None
        self.fallbacks = list(fallbacks)
        self.stats = {'frames_received': 0, 'frames_processed': 0, 'frames_dropped': 0,
                      'frames_skipped_no_subscribers': 0, 'frames_skipped_rate': 0,
                      'bad_frames': 0, 'errors': 0,
                      # The default tasks, and others when enabled: the default status stays
                      # as it was.
                      'head_runs': dict.fromkeys(
                          [t for t in REGISTRY.image_path()
                           if REGISTRY[t].default or t in self.params['tasks']], 0),
                      'last_latency_ms': None, 'label_generation': None}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        health = MutuallyExclusiveCallbackGroup()  # reports while a transition loads weights
        self._status_pub = self.create_publisher(String, '~/status', 10)
        self.create_timer(1.0, self._on_status, callback_group=health)
        self.diagnostics = Diagnostics(self)
        self.last_frame_time = time.monotonic()
        self.create_timer(self.params['warn_after'], self._check_input, callback_group=health)

    @property
    def labels(self):
        """The active LabelSet (None while unconfigured)."""
        return self._labels

    # --- frames ---------------------------------------------------------------------
    def _notify(self) -> None:
        self.last_frame_time = time.monotonic()
        with self._wake:
            self._wake.notify()

    def _next_batch(self):
        """Block until frames or a label change arrive; return the frames to process."""
        with self._wake:
            while not self._stop and self._pending_labels is None and not any(
                    c.has_frame() for c in self.cameras):
                self._wake.wait(0.5)
            # Taken under the lock: a set_labels landing between a read and a reset
            # outside it would be lost.
            label_set, self._pending_labels = self._pending_labels, None
        if label_set is not None:
            self._adopt_labels(label_set)
        return [(c, msg) for c in self.cameras if (msg := c.take()) is not None]

    def _work(self) -> None:
        next_time = 0.0
        while not self._stop:
            try:
                batch = self._next_batch()
                if not batch:
                    continue
                rate = self.params['max_rate']
                if rate > 0:
                    time.sleep(max(0.0, next_time - time.monotonic()))
                    next_time = time.monotonic() + 1.0 / rate
                self._process(batch)
            except Exception as error:  # the node must survive any single bad frame
                if self._stop or not rclpy.ok():
                    return
                self.report('inference', 'frame failed', error)
            finally:
                # Let go of the frames now, not when the next batch arrives: with an 8K
                # camera that is 100 MB held while the next message is being received.
                batch = None

    def report(self, key: str, what: str, error: BaseException) -> None:
        """Count and log (rate-limited) an unexpected error the node survives."""
        self.stats['errors'] += 1
        self.last_error = f'{what}: {error!r}'[:300]
        self._throttle.error(key, self.last_error)

    def _process(self, batch) -> None:
        enabled = frozenset(self.params['tasks'])
        rates = {task: self.params[f'{task}.max_rate'] for task in REGISTRY.image_path()}
        now = time.monotonic()
        frames, work = [], []
        queried = self.query.wants_features() and 'segmentation' in enabled
        for camera, msg in batch:
            wanted = camera.wanted_tasks(enabled) | ({'segmentation'} if queried else set())
            if not wanted:
                self.stats['frames_skipped_no_subscribers'] += 1
                continue
            wanted = self._task_rates.due(wanted, rates, now)
            if not wanted:  # every wanted task ran recently enough (its max_rate)
                self.stats['frames_skipped_rate'] += 1
                continue
            self._check_stamp(camera, msg)
            try:
                frame = compressed.frame_to_rgb(msg)
            except ValueError as error:
                self.stats['bad_frames'] += 1
                self.last_bad_frame = f'{camera.input_topic}: {error}'[:300]
                self._warn(f'bad:{camera.prefix}', f'{camera.input_topic}: frame dropped: '
                           f'{error}')
                continue
            frames.append(frame)
            work.append((camera, msg, wanted))
        if not frames:
            return
        tasks = frozenset().union(*(wanted for _, _, wanted in work))
        label_set = self._labels  # one read: the whole batch uses one label set
        results = self.runtime.pipeline.run(
            frames, tasks, label_set, self.params['output_resolution'],
            self.params['segmentation.threshold'], keep_features=queried)
        self._task_rates.ran(tasks, rates, now)
        for task in tasks:
            self.stats['head_runs'][task] += 1
        for result in results:
            if result.depth is not None:
                processing.mark_beyond_range(result.depth, self.params['depth.max_range'])
        for (camera, msg, wanted), frame, result in zip(work, frames, results):
            camera.publish(result, msg, frame, self.params['depth.view_max'],
                           lambda text, c=camera: self._warn(f'info:{c.prefix}', text))
            self.query.keep(camera.prefix, msg.header, result, frame)
        now = self.get_clock().now().nanoseconds
        stamp = work[-1][1].header.stamp
        self.stats['last_latency_ms'] = round((now - stamp.sec * 1e9 - stamp.nanosec) / 1e6, 1)
        self.stats['frames_processed'] += len(frames)

    def _check_stamp(self, camera, msg) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if stamp < camera.last_stamp_ns:
            self._throttle.warn(f'stamp:{camera.prefix}', f'{camera.image_topic}: stamps went '
                                'backwards (bag loop or clock reset?); outputs keep them')
        if not msg.header.frame_id:
            self._throttle.warn(f'frame:{camera.prefix}', f'{camera.image_topic}: empty '
                                'frame_id; outputs copy it, TF lookups will fail')
        if stamp == 0:
            self._throttle.warn(f'zero:{camera.prefix}', f'{camera.image_topic}: the stamp is '
                                'zero (driver without a clock?); outputs keep it, '
                                'message_filters and TF will not match them')
        camera.last_stamp_ns = stamp

    def _warn(self, key: str, text: str) -> None:
        """Warn with one budget per kind of problem: numbers are folded out of the key."""
        self._throttle.warn(f'{key}:{re.sub(r"[0-9.]+", "#", text)[:160]}', text)

    # --- health -----------------------------------------------------------------------
    def _on_status(self) -> None:
        self.stats['frames_received'] = sum(c.received for c in self.cameras)
        self.stats['frames_dropped'] = sum(c.dropped for c in self.cameras)
        self._status_pub.publish(String(data=json.dumps({**self.stats, 'state': self.state})))

    def _check_input(self) -> None:
        idle = time.monotonic() - self.last_frame_time
        if self.state != 'active' or idle < self.params['warn_after']:
            return
        for camera in self.cameras:
            if camera.received == 0 and camera.publishers_of_input() + \
                    self.count_publishers(camera.image_topic) > 0:
                why = input_watch.why_no_frames(self, camera.image_topic,
                                                self.params['image_transport'],
                                                camera.input_qos)
                self._throttle.warn('input', f'no frame in {idle:.0f} s: {why}')

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the worker (finishing the frame in flight) and release the backend."""
        self.release()
