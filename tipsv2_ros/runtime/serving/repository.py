# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""A Triton Inference Server model repository for the image path: its files and configs.

The repository holds one model per exported part (``<name>_encoder``, ``<name>_depth``,
``<name>_normals``: ONNX Runtime, or TensorRT plans on a GPU host) and one ensemble
``<name>`` that chains them: ``pixel_values`` (B, 3, H, W) in, ``depth``, ``normals`` and
``features`` out. Clients talk to the ensemble only and ask for the outputs of the tasks they
run; Triton prunes the ensemble steps whose outputs nobody asked for, so heads stay lazy
across the wire and the intermediate layers never leave the server.

The ensemble's ``parameters`` carry the metadata a client checks before trusting the
outputs (variant, input size, an id of the image-encoder weights); the tensors and that
metadata are the contract of ``triton_contract.py``. The parts are the parity-gated files of
``runtime.export`` (and ``TensorRTBackend.build`` for plans).
"""
import logging
import pathlib
import shutil
import tempfile
from typing import Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch

from tipsv2_ros.model.tips import TipsV2
from tipsv2_ros.runtime import export
from tipsv2_ros.runtime.backends.base import BackendError, check_tasks
from tipsv2_ros.runtime.backends.triton.contract import (Dims, INPUT, metadata, MODEL_NAME,
                                                         Signature, signature)
from tipsv2_ros.tasks import REGISTRY

logger = logging.getLogger(__name__)

ENGINES = {'onnx': ('onnxruntime_onnx', 'model.onnx'), 'tensorrt': ('tensorrt_plan', 'model.plan')}


class Repository(NamedTuple):
    """What ``write_repository`` wrote."""

    path: pathlib.Path
    models: Dict[str, pathlib.Path]  # model name -> its folder
    engine: str  # 'onnx', or 'tensorrt (<precision>)'
    metadata: Dict[str, str]


def write_repository(model: TipsV2, out_dir, input_size: Sequence[int],
                     tasks: Optional[Iterable[str]] = None, name: str = MODEL_NAME,
                     engine: str = 'onnx', max_batch: int = 8, instances: int = 1,
                     queue_delay_us: int = 1000, precision: str = 'fp16',
                     checkpoints: Optional[Mapping[str, str]] = None, cache_dir=None,
                     log: Callable[[str], None] = logger.info,
                     tensorrt_options: Optional[Mapping] = None) -> Repository:
    """Write (or replace) the models of the image path in a Triton model repository.

    Args:
        model: the loaded model (on a CUDA device for ``engine='tensorrt'``).
        out_dir: the repository folder (``tritonserver --model-repository``); other models
            in it are left alone.
        input_size: (H, W), multiples of 14.
        tasks: the tasks to serve (default: every image-path task).
        name: the ensemble's name; the parts are ``<name>_<part>``.
        engine: 'onnx' (ONNX Runtime; CPU or GPU instances) or 'tensorrt' (plans built and
            parity-gated here: they only load on the same GPU model and TensorRT version).
        max_batch: Triton's max_batch_size (and the plans' largest batch).
        instances: execution instances per part.
        queue_delay_us: how long the dynamic batcher may wait to fill a batch.
        precision: the plans' precision ('fp16' falls back like the tensorrt backend).
        checkpoints: part -> an id of its weight file (``backends.checkpoint_ids``), keying
            the export cache; parts without one hash their tensors.
        cache_dir: the export cache (default: the weights cache's ``engines/``).
        log: progress messages.
        tensorrt_options: more arguments of ``TensorRTBackend.build`` (tests pass a
            stand-in toolchain, which also lifts the CUDA requirement).

    Returns:
        What was written; the call fails (BackendError) before touching ``out_dir`` when an
        export or a parity gate fails.
    """
    tasks = check_tasks(REGISTRY.exported() if tasks is None else tasks)
    input_size = tuple(int(s) for s in input_size)
    if engine not in ENGINES:
        raise BackendError(f'engine {engine!r}: expected one of {", ".join(ENGINES)}')
    if not 1 <= max_batch <= export.MAX_BATCH:
        raise BackendError(f'max_batch {max_batch}: expected 1..{export.MAX_BATCH}')
    tensorrt_options = dict(tensorrt_options or {})
    stand_in = 'toolchain' in tensorrt_options
    if engine == 'tensorrt' and model.device.type != 'cuda' and not stand_in:
        raise BackendError('engine tensorrt builds plans on a CUDA device: load the model there '
                           '(device cuda), or write engine onnx')
    parts = export.export_parts(model, tasks, input_size, checkpoints=checkpoints,
                                cache_dir=cache_dir, log=log)
    files = {part: exported.path for part, exported in parts.items()}
    described = 'onnx'
    if engine == 'tensorrt':
        from tipsv2_ros.runtime.backends.tensorrt.backend import TensorRTBackend
        built = TensorRTBackend.build(model, input_size, tasks, model.device, precision,
                                      cache_dir=cache_dir, checkpoints=checkpoints, log=log,
                                      max_batch=max_batch, **tensorrt_options)
        files, described = dict(built.files), f'tensorrt ({built.precision})'
        built.close()
        plans = next(iter(files.values()))
    dims = part_dims(model, input_size, tasks)
    info = metadata(model, input_size, tasks)
    kind = 'KIND_GPU' if engine == 'tensorrt' else 'KIND_AUTO'
    platform, file_name = ENGINES[engine]
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Staged beside the repository, not in it: a polling server would take the folder for a
    # model; the same file system keeps the final renames atomic.
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}-', dir=out_dir.parent))
    try:
        models = {}
        for part, (inputs, outputs) in dims.items():
            folder = staging / f'{name}_{part}'
            (folder / '1').mkdir(parents=True)
            _copy_part(files[part], parts[part].record, folder / '1' / file_name,
                       engine == 'onnx')
            (folder / 'config.pbtxt').write_text(part_config(
                f'{name}_{part}', platform, max_batch, inputs, outputs, instances, kind,
                queue_delay_us))
            models[f'{name}_{part}'] = folder
        folder = staging / name
        (folder / '1').mkdir(parents=True)  # an ensemble needs an (empty) version folder
        (folder / 'config.pbtxt').write_text(ensemble_config(
            name, max_batch, signature(model, input_size, tasks), dims, info))
        models[name] = folder
        placed = {}
        for model_name, source in models.items():
            target = out_dir / model_name
            shutil.rmtree(target, ignore_errors=True)
            source.rename(target)
            placed[model_name] = target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f'wrote the Triton model repository {out_dir}: ensemble {name} over '
        f'{", ".join(n for n in placed if n != name)} ({described}, max batch {max_batch})')
    if engine == 'tensorrt':
        from tipsv2_ros.runtime.serving import container as triton_container
        log(f'serve it with {triton_container.write_note(out_dir, plans)} '
            f'(see {out_dir / triton_container.FILE_NAME})')
    return Repository(out_dir, placed, described, info)


def part_dims(model: TipsV2, input_size: Sequence[int], tasks: Iterable[str]
              ) -> Dict[str, Tuple[Dict[str, Dims], Dict[str, Dims]]]:
    """Each part's (inputs, outputs) name -> dims, measured on one blank frame."""
    with torch.inference_mode(False), torch.no_grad():
        modules = export.part_modules(model.image_path(tasks, input_size).eval())
        encoder, spec = modules['encoder']
        pixels = torch.zeros((1, 3, *input_size), device=model.device)
        encoded = dict(zip(spec.outputs, encoder(pixels)))
        dims = {'encoder': ({INPUT: (3, *input_size)},
                            {k: tuple(v.shape[1:]) for k, v in encoded.items()})}
        for part in export.parts_for(tasks)[1:]:
            head, head_spec = modules[part]
            feeds = [encoded[n] for n in head_spec.inputs]
            dims[part] = ({n: tuple(encoded[n].shape[1:]) for n in head_spec.inputs},
                          {part: tuple(head(*feeds).shape[1:])})
    return dims


def _copy_part(source: pathlib.Path, record: Mapping, target: pathlib.Path,
               onnx: bool) -> None:
    # An ONNX part over 1 GB keeps its weights in side files named inside the graph: they
    # move along under their own names (only the graph file is renamed to model.onnx).
    shutil.copyfile(source, target)
    if onnx:
        for extra in record.get('files', {}):
            if extra != source.name:
                shutil.copyfile(source.parent / extra, target.parent / extra)


def _tensors(kind: str, tensors: Mapping[str, Dims]) -> str:
    entries = [f'  {{\n    name: "{n}"\n    data_type: TYPE_FP32\n'
               f'    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}'
               for n, dims in tensors.items()]
    return f'{kind} [\n' + ',\n'.join(entries) + '\n]\n'


def part_config(name: str, platform: str, max_batch: int, inputs: Mapping[str, Dims],
                outputs: Mapping[str, Dims], instances: int = 1, kind: str = 'KIND_AUTO',
                queue_delay_us: int = 1000) -> str:
    """Return the config.pbtxt of one part."""
    return (f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch}\n'
            + _tensors('input', inputs) + _tensors('output', outputs)
            + f'instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]\n'
            f'dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}\n')


def ensemble_config(name: str, max_batch: int, served: Signature,
                    dims: Mapping[str, Tuple[Mapping[str, Dims], Mapping[str, Dims]]],
                    info: Mapping[str, str]) -> str:
    """Return the config.pbtxt of the ensemble over the parts in ``dims``."""
    steps = []
    for part, (inputs, outputs) in dims.items():
        # Tensors keep their names through the ensemble: the maps are identities.
        maps = ([f'      input_map {{ key: "{n}" value: "{n}" }}' for n in inputs]
                + [f'      output_map {{ key: "{n}" value: "{n}" }}' for n in outputs])
        steps.append(f'    {{\n      model_name: "{name}_{part}"\n      model_version: -1\n'
                     + '\n'.join(maps) + '\n    }')
    parameters = ''.join(f'parameters {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}\n'
                         for k, v in info.items())
    return (f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {max_batch}\n'
            + _tensors('input', {INPUT: served.pixel_values}) + _tensors('output', served.outputs)
            + 'ensemble_scheduling {\n  step [\n' + ',\n'.join(steps) + '\n  ]\n}\n'
            + parameters)
