# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The typed runtime configuration: which model, which files, which backend, where.

Built by ``tipsv2_ros.ros.params`` from the node's parameters and by the command line from
its flags; the runtime reads only this, never a parameter name. Frozen: a running runtime's
configuration does not change under it.
"""
import dataclasses
import types
from typing import Mapping, Optional, Sequence, Tuple, Union

from tipsv2_ros.tasks import REGISTRY

Size = Tuple[int, int]
# Roles of the weight files that are not a task's own (TaskSpec.files names the others).
MODEL_FILES = ('vision_weights',)
TEXT_PRECISIONS = ('auto', 'fp32', 'bf16')
ZERO_SHOT_MODES = ('whole', 'slide')


def file_roles() -> Tuple[str, ...]:
    """Every weight-file role: the vision weights, then each task's files in registry order."""
    roles = list(MODEL_FILES)
    for spec in REGISTRY:
        roles += [role for role in spec.files if role not in roles]
    return tuple(roles)


def parse_input_size(value: Union[int, str, Sequence[int]]) -> Size:
    """Parse ``N``, ``'N'``, ``'HxW'`` or ``[H, W]`` into (H, W), multiples of 14."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            size = (value, value)
        elif isinstance(value, str):
            parts = value.lower().replace(' ', '').split('x')
            size = tuple(int(p) for p in parts)
        else:
            size = tuple(int(v) for v in value)
        size = size * 2 if len(size) == 1 else size
    except (TypeError, ValueError):
        raise ValueError(f'input size {value!r}: expected N or HxW') from None
    if len(size) != 2 or min(size) < 14 or max(size) > 2240 or any(s % 14 for s in size):
        raise ValueError(f'input size {value!r}: both sides must be multiples of 14 (the '
                         f'patch size) between 14 and 2240')
    return size


@dataclasses.dataclass(frozen=True)
class TensorRTConfig:
    """Engines of backend tensorrt (and of onnxruntime's TensorRT provider).

    None: the platform's default (``runtime.jetson``: smaller on a Jetson's shared memory).
    """

    max_batch: Optional[int] = None  # the engines' largest batch; larger ones run in chunks
    workspace_mb: Optional[int] = None  # the builder's workspace limit


@dataclasses.dataclass(frozen=True)
class ZeroShotConfig:
    """How the zero-shot segmentation sees a frame.

    Attributes:
        mode: 'whole' (the frame at the input size) or 'slide' (windows of the frame, the
            official evaluation recipe; ``runtime.frame.sliding``).
        window: the side of a square window (slide), a multiple of 14.
        stride: the step between windows (slide), at most ``window``.
        frame_size: the (H, W) the frame is resized to before windowing; None: its short
            side to ``window``.
    """

    mode: str = 'whole'
    window: int = 448
    stride: int = 336
    frame_size: Optional[Size] = None

    def __post_init__(self) -> None:
        if self.frame_size is not None:
            object.__setattr__(self, 'frame_size', parse_input_size(self.frame_size))


@dataclasses.dataclass(frozen=True)
class TritonConfig:
    """The server of backend triton."""

    url: str = '127.0.0.1:8001'
    model_name: str = 'tipsv2_image_path'
    timeout: float = 10.0  # seconds a request may take before the server counts as lost
    shared_memory: str = 'auto'  # auto (loopback URL), on, off
    ssl: bool = False  # gRPC over TLS, the server's certificate verified
    root_cert: str = ''  # the CA (PEM) of the server's certificate; '': the system's CAs
    client_cert: str = ''  # mutual TLS: this robot's certificate (PEM) ...
    client_key: str = ''  # ... and its private key


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """What ``runtime.startup.build`` makes a runtime from.

    Attributes:
        tasks: the tasks that may run (image-path tasks of the registry).
        variant: the official variant whose downloaded files are used.
        weights_dir: where ``tipsv2 download`` put them (None: the default cache).
        files: weight files given explicitly, by role (``file_roles``); with
            'vision_weights' among them the downloaded files are not used.
        model_config: a JSON file of hyper-parameters (the golden config.json layout).
        input_size: the (H, W) the image path runs at.
        backend: a backend name, or 'auto'.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        precision: 'auto', 'fp32', 'fp16', 'bf16' or 'int8' (onnxruntime on the CPU).
        text_precision: the text encoder's: 'auto' (bf16 on a CPU with native bf16, else
            fp32), 'fp32' or 'bf16'.
        cache_dir: where ONNX files and engines are cached (None: the default cache).
        calibration_frames: a folder of images for the int8 calibration and accuracy gate
            (None: the bundled sample frames).
        zero_shot: how the zero-shot segmentation sees a frame.
        tensorrt: settings of backend tensorrt.
        triton: settings of backend triton.
    """

    tasks: Tuple[str, ...] = dataclasses.field(default_factory=REGISTRY.defaults)
    variant: str = 'b14'
    weights_dir: Optional[str] = None
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)
    model_config: Optional[str] = None
    input_size: Size = (448, 448)
    backend: str = 'auto'
    device: str = 'auto'
    precision: str = 'auto'
    text_precision: str = 'auto'
    cache_dir: Optional[str] = None
    calibration_frames: Optional[str] = None
    zero_shot: ZeroShotConfig = ZeroShotConfig()
    tensorrt: TensorRTConfig = TensorRTConfig()
    triton: TritonConfig = TritonConfig()

    def __post_init__(self) -> None:
        REGISTRY.check(self.tasks)
        unknown = sorted(set(self.files) - set(file_roles()))
        if unknown:
            raise ValueError(f'unknown weight file role(s) {unknown}; expected {file_roles()}')
        set_field = object.__setattr__  # frozen: normalise once, here
        set_field(self, 'tasks', REGISTRY.ordered(self.tasks))
        set_field(self, 'files', types.MappingProxyType(
            {role: str(path) for role, path in self.files.items() if path}))
        set_field(self, 'input_size', parse_input_size(self.input_size))

    def replace(self, **changes) -> 'RuntimeConfig':
        """Return a copy with ``changes``."""
        return dataclasses.replace(self, **changes)
