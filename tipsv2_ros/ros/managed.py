# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The perception node's managed (lifecycle) states, as rclpy's LifecycleNode drives them.

A mixin of `node.PerceptionNode`, apart from the frame path because it is its own protocol,
the standard ``~/change_state`` / ``~/get_state`` services of lifecycle_msgs:

- configure: load the model (weights, backend, label embeddings) and create the outputs and
  the set_labels and query services. A failure logs the reason, keeps it for /diagnostics
  and leaves the node unconfigured, with nothing loaded.
- activate: subscribe to the frames and start the inference thread.
- deactivate: unsubscribe and stop the thread (the frame in flight finishes); the model
  stays loaded, outputs and the services stay.
- cleanup, shutdown (and the error transition): release everything configure made.

It uses the node's ``params``, ``runtime``, ``_labels``, ``cameras``, ``stats`` and the
worker hand-over fields documented in `node`.
"""
from concurrent.futures import ThreadPoolExecutor
import threading
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy

from tipsv2_ros.model import ade20k
from tipsv2_ros.ros import diagnostics
from tipsv2_ros.ros.camera_io import CameraIO
from tipsv2_ros.ros.query import QueryService
from tipsv2_ros.runtime import startup
from tipsv2_ros.srv import SetLabels

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def input_qos(params) -> QoSProfile:
    """Return the frames' QoS before qos_overrides: sensor data, or what qos.* says."""
    reliability = (ReliabilityPolicy.BEST_EFFORT if params['qos.reliability'] == 'best_effort'
                   else ReliabilityPolicy.RELIABLE)
    return QoSProfile(depth=params['qos.depth'], reliability=reliability)


class ManagedMixin:
    """Lifecycle transitions of `node.PerceptionNode` and the resources each one owns."""

    # --- transitions (called by rclpy's state machine) --------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (startup.StartupError, ValueError) as error:
            return self._configure_failed(str(error))
        except Exception as error:  # an unexpected one: still fail cleanly, say what it was
            return self._configure_failed(repr(error))
        self.config_error = None
        self.state = 'inactive'
        return SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        qos = input_qos(self.params)
        for camera in self.cameras:
            camera.subscribe(qos, self.params['image_transport'])
        self.last_frame_time = time.monotonic()
        with self._wake:
            self._stop = False
        self._worker = threading.Thread(target=self._work, name='tipsv2_inference',
                                        daemon=True)
        self._worker.start()
        self.state = 'active'
        topics = ', '.join(c.input_topic for c in self.cameras)
        self.get_logger().info(f'ready: {self.runtime.backend.describe()}; listening on '
                               f'{topics}; labels {list(self._labels.names)}')
        return SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._deactivate()
        self.state = 'inactive'
        return SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._released('unconfigured')

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        return self._released('finalized')

    def on_error(self, state) -> TransitionCallbackReturn:
        return self._released('unconfigured')

    def _released(self, state: str) -> TransitionCallbackReturn:
        """Release the model and everything built at configure; the node is now ``state``."""
        self.release()
        self.state = state
        return SUCCESS

    # --- resources ------------------------------------------------------------------
    def _configure(self) -> None:
        runtime, label_set = self._preloaded
        self._preloaded = (None, None)
        if runtime is None:
            runtime = startup.build(self.params.runtime_config, log=self.backend_log)
            try:
                label_set = runtime.labels.build(self.params['labels'], self.params['templates'])
            except BaseException:
                runtime.close()
                raise
        self.runtime, self._labels, self._pending_labels = runtime, label_set, None
        self.stats['label_generation'] = label_set.generation
        # Text is encoded on this one long-lived thread, whichever executor thread serves
        # the request: each thread that runs torch ops keeps an OpenMP worker for good, so
        # encoding on varying threads would grow the thread count over hours.
        self._text = ThreadPoolExecutor(1, thread_name_prefix='tipsv2_text')
        semantic = 'segmentation' in runtime.backend.tasks
        self.cameras = [CameraIO(self, prefix.strip('/'), self._notify,
                                 self.params['publish_points'], semantic)
                        for prefix in self.params['cameras']]
        for camera in self.cameras:
            camera.publish_labels(label_set, self.params['segmentation.threshold'],
                                  self.get_clock().now().to_msg())
            if 'ade20k' in self.params['tasks']:
                camera.publish_ade20k_info(ade20k.class_names(
                    runtime.model.config.dpt.segmentation_classes),
                    self.get_clock().now().to_msg())
        self._set_labels_service = self.create_service(
            SetLabels, 'set_labels', self._on_set_labels,
            callback_group=MutuallyExclusiveCallbackGroup())
        self.query = QueryService(self, self.cameras, self._text, self._warn)

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.release()
        self.config_error = reason
        self.state = 'unconfigured'
        self.get_logger().error(f'configure failed, the node stays unconfigured: {reason}')
        return FAILURE

    def backend_log(self, line: str) -> None:
        """Log a line of the backend's set-up; keep the fallbacks for /diagnostics."""
        if diagnostics.is_fallback(line):
            self.fallbacks.append(line.removeprefix('WARNING: ')[:300])
        self.get_logger().info(line)

    def _deactivate(self, timeout: float = 10.0) -> None:
        for camera in self.cameras:
            camera.unsubscribe()
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    def release(self) -> None:
        """Stop the worker (finishing the frame in flight) and release all configure made."""
        self._deactivate()
        if self._set_labels_service is not None:
            self.destroy_service(self._set_labels_service)
            self._set_labels_service = None
        if self.query is not None:
            self.query.destroy()
            self.query = None
        if self._text is not None:
            self._text.shutdown(wait=True)
            self._text = None
        for camera in self.cameras:
            camera.destroy()
        self.cameras = []
        runtime, self.runtime, self._labels = self.runtime, None, None
        self._pending_labels = None
        self.fallbacks = []
        if runtime is not None:
            runtime.close()
