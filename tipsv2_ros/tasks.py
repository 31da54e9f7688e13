# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The registry of tasks: one ``TaskSpec`` per output, which every layer iterates over.

A task is one output of the package: ``depth`` and ``normals`` (DPT heads on the encoder's
intermediate layers), ``segmentation`` (open-vocabulary, zero-shot: the encoder's value-trick
patch features against text embeddings) and ``ade20k`` (the closed-vocabulary ADE20K DPT
head, PyTorch only and not a default task). Its spec names everything the layers need: the
head class (the model), the tensor a backend returns and the export part that computes it
(the runtime), the weight files with their parameters and command-line flags, the published
topics and encodings (the node),
the parity metric of reduced-precision engines and the colour views.

Adding a dense head: write its module in ``model/`` and add one entry to ``REGISTRY`` (or
``register`` it from a plugin); see docs/architecture.md, "Adding a head". Stdlib only, so
that light commands (``tipsv2 download``) read it without loading torch; head classes are
named by import path and resolved when a model is built.
"""
import dataclasses
import importlib
from typing import Dict, FrozenSet, Iterable, Iterator, Optional, Tuple, Union

# Kinds of task.
DENSE_HEAD = 'dense head'  # a DPT head: intermediate layers -> a (B, C, H', W') map
ZERO_SHOT = 'zero-shot'  # the value-trick features (B, h, w, D), classified by label text


@dataclasses.dataclass(frozen=True)
class Topic:
    """One published output of a task, relative to the camera's prefix.

    Attributes:
        name: the topic, e.g. 'depth/image'.
        array: the ``FrameResult`` array it shows.
        encoding: the sensor_msgs/Image encoding; '' for depth/points (a PointCloud2).
        view: a colour view of the array (``runtime.frame.colour.VIEWS``); '' for the array.
    """

    name: str
    array: str
    encoding: str
    view: str = ''


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything the layers need to know about one task.

    Attributes:
        name: the task's name in ``tasks`` parameters and flags.
        kind: ``DENSE_HEAD`` or ``ZERO_SHOT``.
        output: the image-path tensor (``DenseOutputs`` key, ONNX and Triton tensor name).
        files: the weight files the task needs, by role: the node's ``model.<role>``
            parameter, the CLI's ``--<role>`` flag (dashes), ``weights.WeightPaths.<role>``.
        head: the DPT head class, as 'module.Class' or the class itself (dense heads).
        checkpoint_name: the head's name in the official files (Scenic zip, HF prefix).
        channels: the channels of the image path's map (dense heads).
        unit_vectors: the image path L2-normalises the head's output over channels.
        optical_frame: vectors are turned into the camera optical frame by the pipeline.
        arrays: the ``FrameResult`` arrays made from the output, per frame.
        resize: how the output reaches the output size: 'bilinear' or 'normals' (a map, one
            array), 'classes' (class scores: bilinear, then argmax -> label and confidence
            arrays; a zero-shot task's scores are its features against the labels).
        topics: what the node publishes; the task runs while one of them has a subscriber.
        metric: the parity metric of engines against PyTorch fp32
            (``runtime.export.parity.METRICS``) and its acceptance bound.
        bound: the metric's bound.
        image_path: the task runs in the image path (the node's and backends' tasks); False
            for a head that is only loaded (``TipsV2.heads``).
        default: the task is in the default ``tasks`` (the node's and the CLI's).
        backends: the only backends that run it ('' : every backend; a head that is not
            exported runs in PyTorch only).
        description: one line for help texts.
    """

    name: str
    kind: str
    output: str
    files: Tuple[str, ...]
    head: Union[str, type, None] = None
    checkpoint_name: str = ''
    channels: int = 0
    unit_vectors: bool = False
    optical_frame: bool = False
    arrays: Tuple[str, ...] = ()
    resize: str = 'bilinear'
    topics: Tuple[Topic, ...] = ()
    metric: str = ''
    bound: float = 0.0
    image_path: bool = True
    default: bool = True
    backends: Tuple[str, ...] = ()
    description: str = ''

    def head_class(self) -> type:
        """Return the head class (imported on first use)."""
        if not isinstance(self.head, str):
            return self.head
        module, _, name = self.head.rpartition('.')
        return getattr(importlib.import_module(module), name)

    @property
    def part(self) -> Optional[str]:
        """The exported part that computes this output: the head's own, or None (encoder)."""
        return self.name if self.kind == DENSE_HEAD else None

    @property
    def exported(self) -> bool:
        """Whether exported backends (ONNX, TensorRT, Triton) run it."""
        return self.image_path and not self.backends


class Registry:
    """The tasks in their order (the order of outputs, topics and log lines)."""

    def __init__(self, specs: Iterable[TaskSpec]) -> None:
        self._specs: Dict[str, TaskSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: TaskSpec) -> TaskSpec:
        """Add a task (a plugin's or a test's); names, outputs and topics stay unique."""
        if spec.name in self._specs:
            raise ValueError(f'task {spec.name!r} is already registered')
        if spec.kind not in (DENSE_HEAD, ZERO_SHOT):
            raise ValueError(f'task {spec.name!r}: unknown kind {spec.kind!r}')
        taken = {s.output for s in self} | {t.name for s in self for t in s.topics}
        clash = ({spec.output} | {t.name for t in spec.topics}) & taken
        if clash:
            raise ValueError(f'task {spec.name!r}: {sorted(clash)} already belong to a task')
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove a task added with ``register``."""
        del self._specs[name]

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(list(self._specs.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> TaskSpec:
        return self._specs[name]

    def names(self) -> Tuple[str, ...]:
        """Return every task, loaded-only heads included."""
        return tuple(self._specs)

    def image_path(self) -> Tuple[str, ...]:
        """Return the tasks an image path (and so a backend and the node) can run."""
        return tuple(s.name for s in self if s.image_path)

    def defaults(self) -> Tuple[str, ...]:
        """Return the tasks run when none are named."""
        return tuple(s.name for s in self if s.image_path and s.default)

    def exported(self) -> Tuple[str, ...]:
        """Return the tasks of the exported image path (ONNX, TensorRT, Triton)."""
        return tuple(s.name for s in self if s.exported)

    def heads(self) -> Tuple[TaskSpec, ...]:
        """Return the dense heads, loaded-only ones included."""
        return tuple(s for s in self if s.kind == DENSE_HEAD)

    def outputs(self) -> Tuple[str, ...]:
        """Return the exported image path's tensors, in task order."""
        return tuple(s.output for s in self if s.exported)

    def by_checkpoint_name(self, name: str) -> Optional[TaskSpec]:
        """Return the head the official files call ``name`` ('segmentation': ade20k)."""
        return next((s for s in self.heads() if s.checkpoint_name == name), None)

    def check(self, tasks: Iterable[str]) -> FrozenSet[str]:
        """Return ``tasks`` as a frozenset; raise ValueError naming any that is not a task."""
        tasks = frozenset(tasks)
        unknown = tasks - set(self.image_path())
        if unknown:
            raise ValueError(f'unknown task(s) {sorted(unknown)}; expected a subset of '
                             f'{self.image_path()}')
        return tasks

    def ordered(self, tasks: Iterable[str]) -> Tuple[str, ...]:
        """Return ``tasks`` in registry order."""
        tasks = set(tasks)
        return tuple(name for name in self._specs if name in tasks)


REGISTRY = Registry([
    TaskSpec(
        'depth', DENSE_HEAD, 'depth', ('depth_head',), 'tipsv2_ros.model.dpt.DepthHead',
        checkpoint_name='depth', channels=1, arrays=('depth',), resize='bilinear',
        topics=(Topic('depth/image', 'depth', '32FC1'),
                Topic('depth/colored', 'depth', 'rgb8', view='depth'),
                Topic('depth/points', 'depth', '')),
        metric='relative_error', bound=0.01,
        description='metric depth (m) from the depth DPT head'),
    TaskSpec(
        'normals', DENSE_HEAD, 'normals', ('normals_head',), 'tipsv2_ros.model.dpt.NormalsHead',
        checkpoint_name='normals', channels=3, unit_vectors=True, optical_frame=True,
        arrays=('normals',), resize='normals',
        topics=(Topic('normals/image', 'normals', '32FC3'),
                Topic('normals/colored', 'normals', 'rgb8', view='normals')),
        metric='angular_error', bound=2.0,
        description='unit surface normals (camera optical frame) from the normals DPT head'),
    TaskSpec(
        'segmentation', ZERO_SHOT, 'features', ('text_weights', 'tokenizer'),
        arrays=('labels', 'confidence'), resize='classes',
        topics=(Topic('segmentation/labels', 'labels', 'mono8'),
                Topic('segmentation/confidence', 'confidence', 'mono8'),
                Topic('segmentation/colored', 'labels', 'rgb8', view='labels')),
        metric='argmax_agreement', bound=0.99,
        description='open-vocabulary (zero-shot) labels from the value-trick features'),
    TaskSpec(
        'ade20k', DENSE_HEAD, 'ade20k', ('segmentation_head',),
        'tipsv2_ros.model.dpt.SegmentationHead', checkpoint_name='segmentation',
        channels=150, arrays=('ade20k_labels', 'ade20k_confidence'), resize='classes',
        topics=(Topic('ade20k/labels', 'ade20k_labels', 'mono8'),
                Topic('ade20k/confidence', 'ade20k_confidence', 'mono8'),
                Topic('ade20k/colored', 'ade20k_labels', 'rgb8', view='classes')),
        default=False, backends=('torch',),
        description='closed-vocabulary ADE20K labels from the segmentation DPT head'),
])


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task to ``REGISTRY``."""
    return REGISTRY.register(spec)
