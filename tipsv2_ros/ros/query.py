# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The ``query`` service: "where is ...?" heatmaps on the latest processed frame.

The inference worker hands every processed frame to `QueryService.keep`, which keeps, per
camera, the last frame's zero-shot patch features (with its header, label set and colours
at the label image's size). A query scores its phrases on them (`runtime.query`) on the
node's text thread: one text encoding per new phrase, cached, plus one matrix product; it
never runs the image encoder and never changes the active labels or anything published for
them. Safe while frames stream: kept frames are replaced whole, never changed.

Features exist only for frames whose segmentation ran (someone subscribes to a segmentation
output, or to the semantic cloud). When the camera's latest frame has none, the query asks
the worker to compute them for the next frames (for DEMAND_S after each query, so the
queries that follow answer at once) and waits up to WAIT_S for one; without such a frame it
answers on the last frame that had features, and says so, or fails with the reason.
"""
import threading
import time
from typing import NamedTuple

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from tipsv2_ros import processing
from tipsv2_ros.heatmap_view import heatmap_view
from tipsv2_ros.ros import conversions
from tipsv2_ros.ros.camera_io import qos_copy, QOS_OVERRIDES
from tipsv2_ros.runtime import query as scoring
from tipsv2_ros.runtime.labels import LabelError, LabelSet, validate_phrases, validate_templates
from tipsv2_ros.srv import Query

# After a query, frames keep their zero-shot features this long (seconds).
DEMAND_S = 30.0
# The most a query waits for a frame with features (seconds).
WAIT_S = 10.0
# The last query's views, latched so that RViz shows them when it connects later.
VIEW_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
VIEW_TOPICS = ('segmentation/query/heatmap', 'segmentation/query/colored')


class KeptFrame(NamedTuple):
    """What a query needs of one processed frame."""

    header: Header
    features: object          # (h, w, D) torch tensor on the inference device
    size: tuple               # the label image's (height, width)
    rgb: np.ndarray           # (H, W, 3) uint8, the frame at the label image's size
    label_set: LabelSet       # the labels active for the frame
    number: int               # the camera's processed-frame count when it was kept


class QueryService:
    """The query service and the per-camera features and views it uses.

    Args:
        node: the perception node (its ``params`` and ``runtime`` are read per query).
        cameras: the node's `CameraIO` objects; the first answers an empty ``camera``.
        text_thread: the node's one text-encoding executor (see `PerceptionNode`): text
            encoding and the product run there, as for set_labels.
        warn: logs a refusal, rate-limited.
    """

    def __init__(self, node, cameras, text_thread, warn):
        self._node = node
        self._text = text_thread
        self._warn = warn
        self._cameras = [c.prefix for c in cameras]
        self._kept = {}       # prefix -> KeptFrame
        self._processed = {}  # prefix -> frames processed
        self._changed = threading.Condition()
        self._demand_until = 0.0
        self._views = {}
        for prefix in self._cameras:
            self._views[prefix] = [node.create_publisher(
                Image, f'{prefix}/{topic}' if prefix else topic, qos_copy(VIEW_QOS),
                qos_overriding_options=QOS_OVERRIDES)
                for topic in VIEW_TOPICS]
        self._service = node.create_service(Query, 'query', self._on_query,
                                            callback_group=MutuallyExclusiveCallbackGroup())

    # --- the worker's side --------------------------------------------------------------
    def wants_features(self) -> bool:
        """Whether frames should compute zero-shot features for queries now."""
        return time.monotonic() < self._demand_until

    def keep(self, prefix: str, header: Header, result, frame: np.ndarray) -> None:
        """Record a processed frame; keep its features when its segmentation ran."""
        kept = None
        if result.features is not None and result.label_set is not None:
            kept = (header, result.features, tuple(result.size),
                    processing.resize_rgb(frame, result.size), result.label_set)
        with self._changed:
            number = self._processed[prefix] = self._processed.get(prefix, 0) + 1
            if kept is not None:
                self._kept[prefix] = KeptFrame(*kept, number)
            self._changed.notify_all()

    # --- the service ------------------------------------------------------------------
    def _on_query(self, request, response):
        try:
            frame, note = self._answer(request, response)
            stamp = frame.header.stamp
            response.success = True
            response.message = (f'{len(response.heatmaps)} heatmap(s) of the frame stamped '
                                f'{stamp.sec}.{stamp.nanosec:09d}: the probability of each '
                                f'phrase against the {len(frame.label_set.names)} active '
                                f'labels plus the phrase{note}')
        except LabelError as error:
            self._refuse(response, f'query refused: {error}')
        except _Refused as error:
            self._refuse(response, f'query refused: {error}')
        except Exception as error:  # e.g. out of memory while encoding: answer, serve on
            self._refuse(response, f'query failed: {error!r}')
        return response

    def _refuse(self, response, text: str) -> None:
        response.success, response.message = False, text
        response.heatmaps, response.best_scores, response.best_u, response.best_v = [], [], [], []
        self._warn('query', text)

    def _answer(self, request, response):
        phrases = validate_phrases(request.phrases)
        templates = validate_templates(request.templates) if request.templates else None
        prefix = request.camera.strip('/') if request.camera else self._cameras[0]
        if prefix not in self._cameras:
            raise _Refused(f'unknown camera {request.camera[:40]!r}; the cameras are '
                           f'{self._cameras}')
        runtime = self._node.runtime
        if ('segmentation' not in self._node.params['tasks']
                or 'segmentation' not in runtime.backend.tasks):
            raise _Refused('segmentation is not enabled (parameter tasks), so there are no '
                           'zero-shot features to query')
        frame, note = self._frame(prefix)
        pipeline = runtime.pipeline

        def score():
            used = templates or frame.label_set.templates
            embeddings = runtime.labels.embed(phrases, used)
            return scoring.phrase_heatmaps(
                frame.features, frame.label_set.classifier, frame.label_set.names, embeddings,
                phrases, pipeline.temperature, pipeline.model_output_size, frame.size)
        result = self._text.submit(score).result()
        response.header = frame.header
        response.best_scores = [float(v) for v in result.best_scores]
        response.best_u = [int(v) for v in result.best_u]
        response.best_v = [int(v) for v in result.best_v]
        response.heatmaps = [conversions.array_to_image(heat, '32FC1', frame.header)
                             for heat in result.heatmaps]
        self._publish_views(prefix, frame, phrases, result)
        return frame, note

    def _frame(self, prefix: str):
        """Return (the kept frame to answer on, a note for the message)."""
        with self._changed:
            self._demand_until = time.monotonic() + DEMAND_S
            fresh = self._changed.wait_for(lambda: self._is_fresh(prefix), WAIT_S)
            kept = self._kept.get(prefix)
        if kept is None:
            raise _Refused(f'no frame of camera {prefix or "(default)"!r} with zero-shot '
                           f'features within {WAIT_S:.0f} s: are frames arriving on its image '
                           'topic?')
        if fresh:
            return kept, ''
        return kept, (f' (answered on an older frame: no newer frame with features within '
                      f'{WAIT_S:.0f} s)')

    def _is_fresh(self, prefix: str) -> bool:
        kept = self._kept.get(prefix)
        return kept is not None and kept.number == self._processed.get(prefix, 0)

    def _publish_views(self, prefix: str, frame: KeptFrame, phrases, result) -> None:
        """Publish the last query's heatmap and colour view; several phrases: their maximum."""
        heat_pub, colour_pub = self._views[prefix]
        heat = result.heatmaps.max(axis=0)
        heat_pub.publish(conversions.array_to_image(heat, '32FC1', frame.header))
        # Both latched: a display that connects later still shows the last query.
        caption = ' | '.join(f'{p[:40]} {s:.2f}' for p, s in zip(phrases, result.best_scores))
        view = heatmap_view(frame.rgb, heat, caption)
        colour_pub.publish(conversions.array_to_image(view, 'rgb8', frame.header))

    def destroy(self) -> None:
        self._node.destroy_service(self._service)
        for pubs in self._views.values():
            for pub in pubs:
                self._node.destroy_publisher(pub)


class _Refused(Exception):
    """A query that cannot be answered; the message says why."""
