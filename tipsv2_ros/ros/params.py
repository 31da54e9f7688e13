# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The node's parameters: declared once, with descriptions and ranges, read into a dataclass.

``config/perception.yaml`` documents every parameter for users; the descriptions here are
what ``ros2 param describe`` shows. Model, backend, topic and QoS parameters are read-only
(they take effect at start-up); the rest can change at runtime and are validated.
``runtime_config`` turns them into the typed ``RuntimeConfig`` the runtime reads: the
parameter names stop here.
"""
import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from tipsv2_ros.model.zero_shot import TEMPLATES
from tipsv2_ros.runtime import backends
from tipsv2_ros.runtime.config import (file_roles, parse_input_size, RuntimeConfig,
                                       TensorRTConfig, TEXT_PRECISIONS, TritonConfig,
                                       ZERO_SHOT_MODES, ZeroShotConfig)
from tipsv2_ros.tasks import REGISTRY

DEFAULT_LABELS = ('floor', 'wall', 'person', 'door', 'table', 'chair')


@dataclasses.dataclass(frozen=True)
class Spec:
    default: Any
    description: str
    read_only: bool = False
    choices: Tuple[str, ...] = ()
    float_range: Optional[Tuple[float, float]] = None
    int_range: Optional[Tuple[int, int]] = None
    dynamic: bool = False


SPECS: Dict[str, Spec] = {
    'model.variant': Spec('b14', 'Official variant whose downloaded files are used: b14, l14, '
                          'so400m14 or g14.', True, ('b14', 'l14', 'so400m14', 'g14')),
    'model.weights_dir': Spec('', 'Folder of `tipsv2 download` (empty: the default cache).',
                              True),
    'model.vision_weights': Spec('', 'Image encoder .npz/.safetensors (overrides the variant '
                                 'files).', True),
    'model.text_weights': Spec('', 'Text encoder .npz/.safetensors.', True),
    'model.tokenizer': Spec('', 'SentencePiece tokenizer.model.', True),
    'model.depth_head': Spec('', 'Depth DPT head (.zip or .safetensors).', True),
    'model.normals_head': Spec('', 'Normals DPT head (.zip or .safetensors).', True),
    'model.segmentation_head': Spec('', 'ADE20K segmentation DPT head (.zip or .safetensors) '
                                    'for the ade20k task; unused by the zero-shot '
                                    'segmentation.', True),
    'model.config': Spec('', 'Model hyper-parameters (JSON, the golden config.json layout) for '
                         'weights of no official variant; empty: a config.json next to the '
                         'vision weights, else recognised by their shapes.', True),
    'model.input_size': Spec(448, 'Model input: N or "HxW" (multiples of 14); frames are '
                             'resized to it.', True, dynamic=True),
    'backend': Spec('auto', 'Inference backend; auto picks the fastest available.', True,
                    backends.names()),
    'device': Spec('auto', 'auto, cpu, cuda or cuda:N.', True),
    'precision': Spec('auto', 'auto (fp16 on GPU, fp32 on CPU), fp32, fp16, bf16, or int8 '
                      '(backend onnxruntime on the CPU, accuracy-gated against fp32).', True,
                      backends.PRECISIONS),
    'int8.calibration_frames': Spec('', "Folder of images of the robot's own scenes for the "
                                    'int8 calibration and accuracy gate (empty: the bundled '
                                    'sample frames).', True),
    'text_precision': Spec('auto', 'Text encoder (label changes): auto (bf16 on a CPU with '
                           'native bf16, else fp32), fp32 or bf16.', True, TEXT_PRECISIONS),
    'engine_cache_dir': Spec('', 'Where exported ONNX files and TensorRT engines are cached '
                             '(empty: the default cache).', True),
    'tensorrt.max_batch': Spec(0, 'Largest batch of the TensorRT engines (cameras served '
                               'together; larger batches run in chunks); 0: 1 on a Jetson '
                               '(memory), 4 elsewhere.', True, int_range=(0, 64)),
    'tensorrt.workspace_mb': Spec(0, 'Builder workspace limit of the TensorRT engines in MiB; '
                                  '0: 1024 on a Jetson, 4096 elsewhere.', True,
                                  int_range=(0, 65536)),
    'triton.url': Spec('127.0.0.1:8001', 'Triton server (backend: triton).', True),
    'triton.timeout': Spec(10.0, 'Seconds a Triton request may take before the server counts '
                           'as lost (the node then reconnects with backoff).', True,
                           float_range=(0.1, 600.0)),
    'triton.shared_memory': Spec('auto', 'Send frames through system shared memory: auto '
                                 '(when the server is on this host), on or off.', True,
                                 ('auto', 'on', 'off')),
    'triton.model_name': Spec('tipsv2_image_path', 'Model name in the Triton repository.',
                              True),
    'triton.ssl': Spec(False, 'gRPC over TLS; the server certificate is verified.', True),
    'triton.root_cert': Spec('', 'CA certificate (PEM) that signs the server certificate '
                             "(empty: the system's CAs).", True),
    'triton.client_cert': Spec('', 'Client certificate (PEM) for mutual TLS.', True),
    'triton.client_key': Spec('', 'Private key (PEM) of triton.client_cert.', True),
    'tasks': Spec(list(REGISTRY.defaults()), 'Tasks the node may run; each runs '
                  'only while its outputs have subscribers. ade20k (the closed-vocabulary '
                  'ADE20K head, torch backend) needs model.segmentation_head.', True),
    'cameras': Spec([''], 'Camera namespaces served by one model, e.g. [front, rear]; [""] '
                    "is one camera on the node's own image topic.", True),
    'labels': Spec(list(DEFAULT_LABELS), 'Open-vocabulary labels (also set by the set_labels '
                   'service).'),
    'templates': Spec(list(TEMPLATES), 'Prompt templates averaged per label; {} is the '
                      'label.'),
    'segmentation.threshold': Spec(0.0, 'Pixels whose best class confidence is below this get '
                                   '255 (no label).', float_range=(0.0, 1.0)),
    'segmentation.mode': Spec('whole', 'Zero-shot segmentation of the whole frame at once '
                              '(whole), or the official sliding windows (slide: finer, costs '
                              'one encoder pass per window; depth and normals still run once).',
                              True, ZERO_SHOT_MODES),
    'segmentation.window': Spec(448, 'Sliding-window side in pixels; the frame is resized so '
                                'that its short side is this (slide mode).', True,
                                int_range=(14, 2240)),
    'segmentation.stride': Spec(336, 'Pixels between sliding windows, at most the window '
                                '(slide mode).', True, int_range=(1, 2240)),
    'output_resolution': Spec('model', 'model: the decoder resolution (8 pixels per 14-pixel '
                              'patch); input: the camera resolution.',
                              choices=('model', 'input')),
    'publish_points': Spec(False, 'Publish depth/points (organised PointCloud2 built like '
                           "depth_image_proc's, from P; with segmentation also rgb, label and "
                           'confidence; needs camera_info).', True),
    'depth.view_max': Spec(10.0, 'Depth (m) mapped to the end of the colormap in '
                           'depth/colored.', float_range=(0.1, 1000.0)),
    'max_rate': Spec(0.0, 'Most frames per second to process (0: as fast as possible).',
                     float_range=(0.0, 1000.0)),
    'depth.max_range': Spec(10.0, 'Depth (m) at or beyond which depth/image holds +Inf (REP '
                            '118 "too far"); the head cannot tell distances past its 10 m '
                            'range apart.', float_range=(0.01, 1000.0)),
    'image_transport': Spec('raw', 'Input transport, as image_transport names it: raw '
                            '(sensor_msgs/Image on image) or compressed '
                            '(sensor_msgs/CompressedImage, jpeg or png, on image/compressed).',
                            True, ('raw', 'compressed')),
    'autostart': Spec(True, 'Configure and activate at start-up; false: wait unconfigured for '
                      'a lifecycle manager.', True),
    # Aliases kept for old parameter files: the defaults of the input subscriptions, which the
    # standard qos_overrides.<topic>.subscription.* parameters override.
    'qos.reliability': Spec('best_effort', 'Deprecated (use qos_overrides.<image topic>.'
                            'subscription.reliability): the input QoS reliability default.',
                            True, ('best_effort', 'reliable')),
    'qos.depth': Spec(1, 'Deprecated (use qos_overrides.<image topic>.subscription.depth): the '
                      'input queue depth default; 1 means the latest frame wins.', True,
                      int_range=(1, 100)),
    'warn_after': Spec(5.0, 'Seconds without frames (while a publisher exists) before warning '
                       'about a likely QoS mismatch.', True, float_range=(0.5, 3600.0)),
}


def _descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    text = spec.description
    if spec.choices:
        text += f' One of: {", ".join(spec.choices)}.'
    desc = ParameterDescriptor(description=text, read_only=spec.read_only,
                               dynamic_typing=spec.dynamic)
    if spec.float_range:
        desc.floating_point_range = [FloatingPointRange(
            from_value=spec.float_range[0], to_value=spec.float_range[1])]
    if spec.int_range:
        desc.integer_range = [IntegerRange(
            from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
    return desc


def specs() -> Dict[str, Spec]:
    """``SPECS``, plus each task's ``model.<role>`` (unless listed) and ``<task>.max_rate``."""
    found = dict(SPECS)
    found['tasks'] = dataclasses.replace(SPECS['tasks'], default=list(REGISTRY.defaults()))
    for spec in REGISTRY:
        for role in spec.files:
            found.setdefault(f'model.{role}', Spec('', f'Weights of {spec.name}: '
                                                   f'{spec.description}.', True))
        if spec.image_path:
            found[f'{spec.name}.max_rate'] = Spec(
                0.0, f'Most {spec.name} results per second (0: every frame processed).',
                float_range=(0.0, 1000.0))
    return found


def declare(node: Node) -> None:
    """Declare every parameter on ``node`` (values from overrides or the YAML file)."""
    for name, spec in specs().items():
        node.declare_parameter(name, spec.default, _descriptor(name, spec))


def check(name: str, value: Any) -> Optional[str]:
    """Return why ``value`` is not acceptable for ``name``, or None when it is."""
    spec = specs().get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f'{name} must be one of {", ".join(spec.choices)}, not {value!r}'
    if name == 'model.input_size':
        try:
            parse_input_size(value)
        except ValueError as error:
            return str(error)
    if name == 'tasks':
        bad = set(value) - set(REGISTRY.image_path())
        if bad or not value:
            return (f'tasks must be a non-empty subset of {", ".join(REGISTRY.image_path())}: '
                    f'{value}')
    if name == 'cameras' and len(set(value)) != len(value):
        return f'cameras must be distinct: {value}'
    return None


@dataclasses.dataclass(frozen=True)
class NodeParams:
    """A snapshot of the parameters, with the derived values the node needs."""

    values: Dict[str, Any]

    @classmethod
    def from_node(cls, node: Node) -> 'NodeParams':
        values = {name: node.get_parameter(name).value for name in specs()}
        for name, value in values.items():
            problem = check(name, value)
            if problem:
                raise ValueError(f'parameter {problem}')
        return cls(values)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def updated(self, changes: Dict[str, Any]) -> 'NodeParams':
        return NodeParams({**self.values, **changes})

    @property
    def input_size(self) -> Tuple[int, int]:
        return parse_input_size(self.values['model.input_size'])

    @property
    def runtime_config(self) -> RuntimeConfig:
        """The typed configuration of the runtime (start-up parameters only)."""
        return runtime_config(self.values)


def runtime_config(values: Mapping[str, Any]) -> RuntimeConfig:
    """Return the runtime configuration the parameter ``values`` describe (missing: defaults)."""
    def get(name):
        return values.get(name, SPECS[name].default)

    files = {role: str(values[f'model.{role}']) for role in file_roles()
             if values.get(f'model.{role}')}
    return RuntimeConfig(
        tasks=tuple(get('tasks')), variant=str(get('model.variant')),
        weights_dir=str(get('model.weights_dir')) or None, files=files,
        model_config=str(get('model.config')) or None,
        input_size=parse_input_size(get('model.input_size')), backend=str(get('backend')),
        device=str(get('device')), precision=str(get('precision')),
        text_precision=str(get('text_precision')),
        cache_dir=str(get('engine_cache_dir')) or None,
        calibration_frames=str(get('int8.calibration_frames') or '') or None,
        zero_shot=ZeroShotConfig(str(get('segmentation.mode')), int(get('segmentation.window')),
                                 int(get('segmentation.stride')),
                                 values.get('segmentation.frame_size') or None),
        tensorrt=TensorRTConfig(int(get('tensorrt.max_batch')) or None,
                                int(get('tensorrt.workspace_mb')) or None),
        triton=TritonConfig(url=str(get('triton.url')), model_name=str(get('triton.model_name')),
                            timeout=float(get('triton.timeout')),
                            shared_memory=str(get('triton.shared_memory')),
                            ssl=bool(get('triton.ssl')),
                            **{name: str(get(f'triton.{name}') or '').strip()
                               for name in ('root_cert', 'client_cert', 'client_key')}))


def parameter_values(config: RuntimeConfig) -> Dict[str, Any]:
    """Return parameter values that make a node's runtime ``config``.

    The inverse of ``runtime_config``; parameters the configuration does not fix keep their
    defaults.
    """
    values = {f'model.{role}': path for role, path in config.files.items()}
    if 'vision_weights' not in config.files:  # the files say it; 'tiny' is no node variant
        values['model.variant'] = config.variant
    values.update({
        'tasks': list(config.tasks), 'model.input_size': 'x'.join(map(str, config.input_size)),
        'backend': config.backend, 'device': config.device, 'precision': config.precision,
        'text_precision': config.text_precision,
        'segmentation.mode': config.zero_shot.mode,
        'segmentation.window': config.zero_shot.window,
        'segmentation.stride': config.zero_shot.stride,
        'tensorrt.max_batch': config.tensorrt.max_batch or 0,
        'tensorrt.workspace_mb': config.tensorrt.workspace_mb or 0,
        'triton.url': config.triton.url, 'triton.model_name': config.triton.model_name,
        'triton.timeout': config.triton.timeout,
        'triton.shared_memory': config.triton.shared_memory, 'triton.ssl': config.triton.ssl,
        **{f'triton.{name}': getattr(config.triton, name)
           for name in ('root_cert', 'client_cert', 'client_key')}})
    for name, value in (('model.weights_dir', config.weights_dir),
                        ('model.config', config.model_config),
                        ('engine_cache_dir', config.cache_dir),
                        ('int8.calibration_frames', config.calibration_frames)):
        if value:
            values[name] = value
    return values
