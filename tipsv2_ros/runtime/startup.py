# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Start-up wiring: a ``RuntimeConfig`` -> model, backend, pipeline and label bank.

What the node (or a command-line tool) runs is built here.

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
from tipsv2_ros.runtime.backends.base import Backend, BackendError
from tipsv2_ros.runtime.config import (file_roles, RuntimeConfig, TEXT_PRECISIONS,
                                       ZERO_SHOT_MODES)
from tipsv2_ros.runtime.cpu import native_bf16
from tipsv2_ros.runtime.frame.labels import LabelBank
from tipsv2_ros.runtime.frame.pipeline import Pipeline
from tipsv2_ros.runtime.frame.sliding import check_window, encoder_size, SlidingWindow
from tipsv2_ros.tasks import REGISTRY, ZERO_SHOT


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


def model_files(config: RuntimeConfig) -> Dict[str, Optional[str]]:
    """Local weight paths by role: explicit files win over the downloaded variant files.

    Heads that no task of ``config`` runs are left out of the downloaded ones (they load
    only when named).
    """
    explicit = {role: config.files.get(role) for role in file_roles()}
    if explicit['vision_weights']:
        return explicit
    from tipsv2_ros import weights  # the catalogue of downloaded official files
    try:
        found = weights.resolve_weights(config.variant, config.weights_dir)._asdict()
    except (FileNotFoundError, ValueError) as error:
        raise StartupError(str(error)) from None
    found['vision_weights'], found['text_weights'] = found.pop('vision'), found.pop('text')
    used = {'vision_weights'} | {role for task in config.tasks for role in REGISTRY[task].files}
    return {role: explicit[role] or (str(found[role]) if found.get(role) and role in used
                                     else None) for role in file_roles()}


def model_variant(config: RuntimeConfig) -> Union[str, ModelConfig, None]:
    """Return what the weights are checked against: a config file, a variant, or None.

    ``model_config`` (a JSON file) wins; downloaded files are those of ``variant``; explicit
    files are recognised by ``TipsV2.from_files`` (a config.json next to them, or their
    shapes).
    """
    if config.model_config:
        try:
            return config_file.read_config(str(config.model_config))
        except ValueError as error:
            raise StartupError(f'model.config: {error}') from None
    return config.variant if not config.files.get('vision_weights') else None


def load_model(files: Dict[str, Optional[str]], tasks,
               variant: Union[str, ModelConfig, None], device: torch.device) -> TipsV2:
    """Load the files ``tasks`` need (by role) onto ``device``; raise StartupError."""
    for task in REGISTRY.ordered(tasks):
        for role in REGISTRY[task].files:
            if not files.get(role):
                raise StartupError(f'task {task!r} needs model.{role}: set the parameter, run '
                                   f'`tipsv2 download`, or remove {task!r} from tasks')
    for role, path in files.items():
        if path and not os.path.isfile(path):
            raise StartupError(f'model.{role}: no such file {path!r}')
    needs_text = any(REGISTRY[t].kind == ZERO_SHOT for t in tasks)
    # A head loads when its task runs, or (a head no task runs) when its file is named.
    heads = {spec.files[0]: files.get(spec.files[0]) for spec in REGISTRY.heads()
             if spec.name in set(tasks) or not spec.image_path}
    try:
        model = TipsV2.from_files(
            vision_weights=files['vision_weights'],
            text_weights=files.get('text_weights') if needs_text else None,
            tokenizer=files.get('tokenizer') if needs_text else None, variant=variant,
            **heads)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise StartupError(f'could not load the weights: {error}') from None
    return model.to(device).eval()


def build(config: RuntimeConfig, log: Callable[[str], None] = print,
          keep_torch: bool = False) -> Runtime:
    """Create the runtime the node (or a command-line tool) uses.

    Once TensorRT engines are accepted, the image tower and heads leave the GPU (the text
    tower stays, for labels); ``keep_torch`` keeps them there (the benchmark compares both).
    """
    device = resolve_device(config.device)
    files = model_files(config)
    model = load_model(files, config.tasks, model_variant(config), device)
    if model.text is not None:
        model.set_text_precision(resolve_text_precision(config.text_precision, device))
    log(f'loaded {model.describe()} for {sorted(config.tasks)} on {device}'
        + (f' (text encoder {model.text_precision})' if model.text is not None else ''))
    config = config.replace(files=files)
    try:
        backend = backends.create(config.backend, model, config.input_size, config.tasks,
                                  device, config.precision, config.cache_dir, log, config)
    except BackendError as error:
        raise StartupError(str(error)) from None
    try:
        slide = sliding_window(config, model, device, log)
    except (BackendError, ValueError) as error:
        backend.close()
        raise StartupError(f'segmentation.mode slide: {error}') from None
    if backend.name == 'tensorrt' and not keep_torch:
        release_image_towers(model, log)
    temperature = model.temperature if model.temperature is not None else 0.01
    zero_shot = any(REGISTRY[t].kind == ZERO_SHOT for t in config.tasks)
    labels = LabelBank(_text_encoder(model, device)) if zero_shot else LabelBank(_no_text)
    return Runtime(model, backend, Pipeline(backend, temperature, slide), labels)


def sliding_window(config: RuntimeConfig, model: TipsV2, device: torch.device,
                   log: Callable[[str], None]) -> Optional[SlidingWindow]:
    """Build the sliding-window zero-shot mode when ``config.zero_shot.mode`` is 'slide'.

    The frame is resized to ``zero_shot.frame_size`` when given, else its short side to the
    window. The window backend is of the same kind as the main one, with the zero-shot
    tasks only.
    """
    settings = config.zero_shot
    if settings.mode not in ZERO_SHOT_MODES:
        raise ValueError(f'unknown mode {settings.mode!r}; use one of '
                         f'{", ".join(ZERO_SHOT_MODES)}')
    zero_shot = [t for t in config.tasks if REGISTRY[t].kind == ZERO_SHOT]
    if settings.mode != 'slide' or not zero_shot:
        return None
    check_window(settings.window, settings.stride)
    size = encoder_size(settings.window, settings.frame_size)
    backend = backends.create(config.backend, model, size, zero_shot, device,
                              config.precision, config.cache_dir, log, config)
    slide = SlidingWindow(backend, settings.window, settings.stride, settings.frame_size)
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
