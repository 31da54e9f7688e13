# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Run-time changes to the perception node: the set_labels service and parameter updates.

A mixin of `node.PerceptionNode` holding the label-change protocol: labels are embedded on
the node's one text thread while frames go on, then handed to the inference worker through
``_pending_labels`` under ``_wake``; the worker adopts them between two frames
(`_adopt_labels`) and publishes the label info before the next masks. It uses the node's
``params``, ``runtime``, ``cameras``, ``stats``, ``_labels``, ``_pending_labels``, ``_wake``,
``_text`` and ``_warn``.
"""
from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from tipsv2_ros.ros import params as node_params
from tipsv2_ros.runtime.frame.labels import LabelError, validate_labels, validate_templates


class ReconfigureMixin:
    """set_labels and parameter callbacks of `node.PerceptionNode`, and the label hand-over."""

    def _on_set_labels(self, request, response):
        templates = list(request.templates) or list(self._labels.templates)
        try:
            label_set = self._build_labels(list(request.labels), templates)
        except LabelError as error:
            response.success, response.message = False, f'labels unchanged: {error}'
            current = self._pending_labels or self._labels
        except Exception as error:  # e.g. out of memory while encoding
            response.success = False
            response.message = f'labels unchanged: text encoding failed: {error!r}'
            current = self._pending_labels or self._labels
        else:
            self._set_labels(label_set)
            self._sync_label_parameters(label_set)
            response.success = True
            response.message = f'{len(label_set.names)} labels active from the next frame'
            current = label_set
        response.class_ids = list(range(len(current.names)))
        response.class_names = list(current.names)
        if not response.success:
            self._warn('set_labels', response.message)
        return response

    def _sync_label_parameters(self, label_set) -> None:
        """Keep the labels and templates parameters equal to what set_labels made active.

        So ``ros2 param get`` and ``ros2 param dump`` tell the truth. The parameter callback
        sees the label set it already has and builds nothing.
        """
        result = self.set_parameters_atomically([
            Parameter('labels', value=list(label_set.names)),
            Parameter('templates', value=list(label_set.templates))])
        if not result.successful:
            self._warn('set_labels', f'labels parameter not updated: {result.reason}')

    def _build_labels(self, labels, templates):
        return self._text.submit(self.runtime.labels.build, labels, templates).result()

    def _set_labels(self, label_set) -> None:
        """Hand ``label_set`` to the worker; None re-publishes the current label info."""
        with self._wake:
            current = self._pending_labels or self._labels
            if label_set is None:
                label_set = current
            elif label_set.generation < current.generation:
                return  # the service and a parameter change raced: the later request wins
            self._pending_labels = label_set
            self._wake.notify()

    def _adopt_labels(self, label_set) -> None:
        """Make ``label_set`` current and publish its label info (the worker, between frames)."""
        self._labels = label_set
        self.stats['label_generation'] = label_set.generation
        stamp = self.get_clock().now().to_msg()
        for camera in self.cameras:
            camera.publish_labels(label_set, self.params['segmentation.threshold'], stamp)

    def _on_set_parameters(self, parameters):
        changes = {}
        declared = node_params.specs()
        for param in parameters:
            if param.name not in declared:
                continue
            problem = node_params.check(param.name, param.value)
            if problem:
                return self._refuse(problem)
            changes[param.name] = param.value
        label_set = None
        current = self._pending_labels or self._labels
        asked = {name: tuple(changes[name]) for name in ('labels', 'templates') if name in changes}
        if current is not None and asked and asked == {
                name: {'labels': current.names, 'templates': current.templates}[name]
                for name in asked}:
            pass  # the labels in use (set_labels keeping the parameters in step): no rebuild
        elif ('labels' in changes or 'templates' in changes) and current is None:
            try:  # unconfigured: checked now, embedded when the node is configured
                validate_labels(changes.get('labels', self.params['labels']))
                validate_templates(changes.get('templates', self.params['templates']))
            except LabelError as error:
                return self._refuse(str(error))
        elif 'labels' in changes or 'templates' in changes:
            try:
                label_set = self._build_labels(changes.get('labels', current.names),
                                               changes.get('templates', current.templates))
            except LabelError as error:
                return self._refuse(str(error))
            except Exception as error:  # e.g. out of memory while encoding: refuse, serve on
                return self._refuse(f'text encoding failed: {error!r}')
        # The snapshot before the hand-over: the worker reads the threshold from it when it
        # publishes the label info.
        self.params = self.params.updated(changes)
        if label_set is not None:
            self._set_labels(label_set)
        elif 'segmentation.threshold' in changes:
            self._set_labels(None)  # re-publish label info with the new threshold
        return SetParametersResult(successful=True)

    def _refuse(self, reason: str) -> SetParametersResult:
        self._warn('param', f'parameter change refused: {reason}')
        return SetParametersResult(successful=False, reason=reason)
