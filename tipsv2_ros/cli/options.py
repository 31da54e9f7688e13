# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Command-line options naming the model files, shared by the commands that load a model.

The flags mirror the node's ``model.*`` parameters (one ``--<role>`` per weight file of the
task registry), and ``runtime_config`` turns them into the same ``RuntimeConfig`` the node
builds from its parameters, so every tool loads weights the same way.
"""
import argparse

from tipsv2_ros.tasks import DENSE_HEAD, REGISTRY

# Help of the files that are no task's own, and of the built-in tasks' files.
FILE_HELP = {
    'vision_weights': 'image encoder: official .npz or HF model.safetensors',
    'text_weights': 'text encoder: official .npz or HF model.safetensors',
    'tokenizer': 'SentencePiece tokenizer.model',
    'depth_head': 'depth DPT head: official .zip or HF -dpt .safetensors',
    'normals_head': 'normals DPT head',
    'segmentation_head': 'ADE20K segmentation DPT head (tipsv2 infer: its view, --save-raw)',
}


def file_flags() -> dict:
    """Every weight-file role -> its help: the vision weights, then each task's files."""
    from tipsv2_ros.runtime.config import file_roles
    return {role: FILE_HELP.get(role) or _task_help(role) for role in file_roles()}


def _task_help(role: str) -> str:
    spec = next(s for s in REGISTRY if role in s.files)
    return f'{spec.name}: {spec.description}'


def add_model_options(group) -> None:
    """Add --variant, --weights-dir and --config: which model the files are."""
    group.add_argument('--variant', default='b14', help='b14, l14, so400m14 or g14')
    group.add_argument('--weights-dir', help='where `tipsv2 download` put the files')
    group.add_argument('--config', metavar='JSON',
                       help='hyper-parameters of weights of no official variant (the golden '
                            'config.json layout); default: a config.json next to '
                            '--vision-weights, else recognised by the shapes')


def add_weight_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('model files (default: the downloaded --variant)')
    for name, text in file_flags().items():
        group.add_argument('--' + name.replace('_', '-'), metavar='FILE', help=text)
    add_model_options(group)
    group.add_argument('--input-size', default='448', help='N or HxW, multiples of 14')
    group.add_argument('--backend', default='torch',
                       help="a backend, as the node's backend parameter (torch, "
                            'onnxruntime, tensorrt, triton, ...), or auto (default: torch)')
    group.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    group.add_argument('--precision', default='auto', help='auto, fp32, fp16, bf16 or int8')
    group.add_argument('--text-precision', default='auto',
                       help='text encoder: auto (bf16 on CPUs with native bf16), fp32 or bf16')


def explicit_files(args) -> dict:
    """Return the weight files given on the command line, by role."""
    return {role: getattr(args, role) for role in file_flags() if getattr(args, role, None)}


def runtime_config(args, **changes):
    """Return the ``RuntimeConfig`` of the flags, with the tasks the given files allow."""
    from tipsv2_ros.runtime.config import RuntimeConfig
    explicit = explicit_files(args)
    tasks = REGISTRY.defaults()
    if explicit:
        if 'vision_weights' not in explicit:
            raise ValueError('--vision-weights is needed when model files are given')
        tasks = [name for name in REGISTRY.defaults()
                 if all(role in explicit for role in REGISTRY[name].files)]
        # An HF model.safetensors holds both towers: text comes with the vision file.
        if explicit['vision_weights'].endswith('.safetensors') and 'tokenizer' in explicit:
            tasks += [name for name in REGISTRY.defaults() if name not in tasks
                      and REGISTRY[name].kind != DENSE_HEAD]
        if not tasks:
            raise ValueError('no task can run: give --depth-head, --normals-head, or '
                             '--text-weights with --tokenizer')
    values = {'tasks': tuple(tasks), 'variant': args.variant,
              'weights_dir': args.weights_dir or None, 'files': explicit,
              'model_config': getattr(args, 'config', None) or None,
              'input_size': args.input_size, 'backend': getattr(args, 'backend', 'torch'),
              'device': args.device, 'precision': getattr(args, 'precision', 'auto'),
              'text_precision': getattr(args, 'text_precision', None) or 'auto'}
    values.update(changes)
    return RuntimeConfig(**values)
