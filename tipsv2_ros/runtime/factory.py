# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Builds what the node runs from its parameters: model, backend, pipeline, label bank.

Everything that can fail on a bad installation (missing or corrupt weights, an unknown
backend, a CUDA device that is not there) fails here, with a StartupError that says what
to do, before the node creates any topic.
"""
import os
from typing import Callable, Dict, NamedTuple, Optional, Union

import torch

from tipsv2_ros.model import config_file
from tipsv2_ros.model.config import ModelConfig
from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime import backends
from tipsv2_ros.runtime.base import Backend, BackendError, check_tasks
from tipsv2_ros.runtime.labels import LabelBank
from tipsv2_ros.runtime.pipeline import parse_input_size, Pipeline
from tipsv2_ros.runtime.sliding import check_window, encoder_size, MODES, SlidingWindow

# Which files each task needs, by parameter name (the `tipsv2 infer` flags mirror them).
TASK_FILES = {
    'depth': ('model.depth_head',),
    'normals': ('model.normals_head',),
    'segmentation': ('model.text_weights', 'model.tokenizer'),
    'ade20k': ('model.segmentation_head',),
}
TEXT_PRECISIONS = ('auto', 'fp32', 'bf16')
FILE_PARAMS = ('model.vision_weights', 'model.text_weights', 'model.tokenizer',
               'model.depth_head', 'model.normals_head', 'model.segmentation_head')


class StartupError(RuntimeError):
    """The node cannot start; the message says what is wrong and how to fix it."""


class Runtime(NamedTuple):
    model: TipsV2
    backend: Backend
    pipeline: Pipeline
    labels: LabelBank

    def close(self) -> None:
        self.backend.close()
        if self.pipeline.slide is not None:
            self.pipeline.slide.close()


def resolve_device(name: str) -> torch.device:
    if name in ('', 'auto'):
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise StartupError(f'device {name!r}: {error}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise StartupError(f'device {name!r} asked for, but this PyTorch build sees no CUDA '
                           f'GPU (torch {torch.__version__}); use device: cpu')
    return device


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX), so bf16 is faster."""
    checks = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_text_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 on a CPU with native bf16, else fp32 (text costs little on a GPU).

    A cold label change runs ~90 prompts through a text encoder as large as the image
    encoder, as many tokens as a 448x448 frame: in fp32 it costs about one encoder frame;
    bf16 matrix units do it in a fraction of that, with embeddings within ~0.5% (cosine
    >= 0.9999) of fp32.
    """
    if name not in TEXT_PRECISIONS:
        raise StartupError(f'text_precision {name!r}: expected one of '
                           f'{", ".join(TEXT_PRECISIONS)}')
    if name != 'auto':
        return name
    return 'bf16' if torch.device(device).type == 'cpu' and native_bf16() else 'fp32'


def model_files(values: Dict[str, object]) -> Dict[str, Optional[str]]:
    """Local weight paths: explicit parameters win over the downloaded variant files."""
    explicit = {name: values.get(name) or None for name in FILE_PARAMS}
    if explicit['model.vision_weights']:
        return explicit
    from tipsv2_ros import weights  # the catalogue of downloaded official files
    try:
        found = weights.resolve_weights(values.get('model.variant', 'b14'),
                                        values.get('model.weights_dir') or None)
    except (FileNotFoundError, ValueError) as error:
        raise StartupError(str(error)) from None
    downloaded = {
        'model.vision_weights': found.vision, 'model.text_weights': found.text,
        'model.tokenizer': found.tokenizer, 'model.depth_head': found.depth_head,
        'model.normals_head': found.normals_head,
        'model.segmentation_head': found.segmentation_head}
    # The ADE20K head is not used by the zero-shot masks: load it only for the ade20k task.
    if 'ade20k' not in values.get('tasks', ()):
        downloaded['model.segmentation_head'] = None
    return {name: explicit[name] or (str(downloaded[name]) if downloaded[name] else None)
            for name in FILE_PARAMS}


def model_variant(values: Dict[str, object]) -> Union[str, ModelConfig, None]:
    """Return what the weights are checked against: a config file, a variant, or None.

    ``model.config`` (a JSON file) wins; downloaded files are those of ``model.variant``;
    explicit files are recognised by ``TipsV2.from_files`` (a config.json next to them, or
    their shapes).
    """
    if values.get('model.config'):
        try:
            return config_file.read_config(str(values['model.config']))
        except ValueError as error:
            raise StartupError(f'model.config: {error}') from None
    return values.get('model.variant') if not values.get('model.vision_weights') else None


def load_model(files: Dict[str, Optional[str]], tasks,
               variant: Union[str, ModelConfig, None], device: torch.device) -> TipsV2:
    for task in tasks:
        for name in TASK_FILES[task]:
            if not files.get(name):
                raise StartupError(f'task {task!r} needs {name}: set the parameter, run '
                                   f'`tipsv2 download`, or remove {task!r} from tasks')
    for name, path in files.items():
        if path and not os.path.isfile(path):
            raise StartupError(f'{name}: no such file {path!r}')
    needs_text = 'segmentation' in tasks
    try:
        model = TipsV2.from_files(
            vision_weights=files['model.vision_weights'],
            text_weights=files['model.text_weights'] if needs_text else None,
            tokenizer=files['model.tokenizer'] if needs_text else None,
            depth_head=files['model.depth_head'] if 'depth' in tasks else None,
            normals_head=files['model.normals_head'] if 'normals' in tasks else None,
            segmentation_head=files.get('model.segmentation_head'), variant=variant)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise StartupError(f'could not load the weights: {error}') from None
    return model.to(device).eval()


def build(values: Dict[str, object], log: Callable[[str], None] = print,
          keep_torch: bool = False) -> Runtime:
    """Create the runtime the node (or a command-line tool) uses, from parameter values.

    Once TensorRT engines are accepted, the image tower and heads leave the GPU (the text
    tower stays, for labels); ``keep_torch`` keeps them there (the benchmark compares both).
    """
    tasks = check_tasks(values.get('tasks', ('depth', 'normals', 'segmentation')))
    device = resolve_device(str(values.get('device', 'auto')))
    input_size = parse_input_size(values.get('model.input_size', 448))
    files = model_files(values)
    model = load_model(files, tasks, model_variant(values), device)
    if model.text is not None:
        model.set_text_precision(resolve_text_precision(
            str(values.get('text_precision', 'auto')), device))
    log(f'loaded {model.describe()} for {sorted(tasks)} on {device}'
        + (f' (text encoder {model.text_precision})' if model.text is not None else ''))
    try:
        backend = backends.create(str(values.get('backend', 'auto')), model, input_size,
                                  tasks, device, str(values.get('precision', 'auto')),
                                  values.get('engine_cache_dir') or None, log,
                                  options=values)
    except BackendError as error:
        raise StartupError(str(error)) from None
    try:
        slide = sliding_window(values, model, tasks, device, log)
    except (BackendError, ValueError) as error:
        backend.close()
        raise StartupError(f'segmentation.mode slide: {error}') from None
    if backend.name == 'tensorrt' and not keep_torch:
        release_image_towers(model, log)
    temperature = model.temperature if model.temperature is not None else 0.01
    labels = LabelBank(_text_encoder(model, device)) if 'segmentation' in tasks \
        else LabelBank(_no_text)
    return Runtime(model, backend, Pipeline(backend, temperature, slide), labels)


def sliding_window(values: Dict[str, object], model: TipsV2, tasks, device: torch.device,
                   log: Callable[[str], None]) -> Optional[SlidingWindow]:
    """Build the sliding-window zero-shot mode when ``segmentation.mode`` is 'slide'.

    ``segmentation.window`` and ``segmentation.stride`` set the windows; the frame is
    resized to ``segmentation.frame_size`` (``tipsv2 infer --input-size``) when given, else
    its short side to the window. The window backend is of the same kind as the main one.
    """
    mode = str(values.get('segmentation.mode', 'whole'))
    if mode not in MODES:
        raise ValueError(f'unknown mode {mode!r}; use one of {", ".join(MODES)}')
    if mode != 'slide' or 'segmentation' not in tasks:
        return None
    window = int(values.get('segmentation.window', 448))
    stride = int(values.get('segmentation.stride', 336))
    check_window(window, stride)
    frame_size = values.get('segmentation.frame_size') or None
    frame_size = parse_input_size(frame_size) if frame_size else None
    size = encoder_size(window, frame_size)
    backend = backends.create(str(values.get('backend', 'auto')), model, size,
                              {'segmentation'}, device, str(values.get('precision', 'auto')),
                              values.get('engine_cache_dir') or None, log, options=values)
    slide = SlidingWindow(backend, window, stride, frame_size)
    log(slide.describe())
    return slide


def release_image_towers(model: TipsV2, log: Callable[[str], None]) -> None:
    """Move the image tower and heads to the CPU once engines run them (GPU memory)."""
    if model.device.type != 'cuda':
        return
    before = torch.cuda.memory_allocated(model.device)
    model.vision.to('cpu')
    model.heads.to('cpu')
    torch.cuda.empty_cache()
    freed = before - torch.cuda.memory_allocated(model.device)
    log(f'the PyTorch image tower and heads left the GPU ({freed / 2**20:.0f} MiB); the '
        'engines run them')


def _text_encoder(model: TipsV2, device: torch.device):
    """Return the label encoder, on a CUDA stream of its own.

    A cold label change then never waits for frames, and frames never wait for it (no
    device-wide synchronisation on either side).
    """
    stream = torch.cuda.Stream(device) if device.type == 'cuda' else None

    def encode(names, templates):
        if stream is None:
            return model.text_classifier(names, templates).to(device)
        with torch.cuda.stream(stream):
            embeddings = model.text_classifier(names, templates).to(device)
        stream.synchronize()  # this stream only; the frame path uses the result afterwards
        return embeddings
    return encode


def _no_text(names, templates):
    """Return placeholder embeddings when segmentation is off (labels still validate)."""
    return torch.zeros(len(names), 1)
