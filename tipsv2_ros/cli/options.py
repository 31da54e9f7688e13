# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Command-line options naming the model files, shared by the commands that load a model.

The flags mirror the node's ``model.*`` parameters, and ``weight_values`` turns them into
the same parameter dictionary the node uses, so every tool loads weights the same way.
"""
import argparse

FILE_FLAGS = {
    'vision_weights': 'image encoder: official .npz or HF model.safetensors',
    'text_weights': 'text encoder: official .npz or HF model.safetensors',
    'tokenizer': 'SentencePiece tokenizer.model',
    'depth_head': 'depth DPT head: official .zip or HF -dpt .safetensors',
    'normals_head': 'normals DPT head',
    'segmentation_head': 'ADE20K segmentation DPT head (tipsv2 infer: its view, --save-raw)',
}
TASK_FILES = {'depth': ('depth_head',), 'normals': ('normals_head',),
              'segmentation': ('text_weights', 'tokenizer')}


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
    for name, text in FILE_FLAGS.items():
        group.add_argument('--' + name.replace('_', '-'), metavar='FILE', help=text)
    add_model_options(group)
    group.add_argument('--input-size', default='448', help='N or HxW, multiples of 14')
    group.add_argument('--backend', default='torch',
                       help='torch (default), onnxruntime, tensorrt or auto')
    group.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    group.add_argument('--precision', default='auto', help='auto, fp32, fp16, bf16 or int8')
    group.add_argument('--text-precision', default='auto',
                       help='text encoder: auto (bf16 on CPUs with native bf16), fp32 or bf16')


def weight_values(args) -> dict:
    """Return node-style parameter values for the files and the tasks they allow."""
    values = {'model.variant': args.variant, 'model.weights_dir': args.weights_dir or '',
              'model.input_size': args.input_size, 'backend': args.backend,
              'device': args.device, 'precision': args.precision,
              'text_precision': getattr(args, 'text_precision', 'auto'),
              'model.config': getattr(args, 'config', None) or ''}
    explicit = {name: getattr(args, name) for name in FILE_FLAGS if getattr(args, name)}
    values.update({f'model.{name}': path for name, path in explicit.items()})
    if explicit:
        if 'vision_weights' not in explicit:
            raise ValueError('--vision-weights is needed when model files are given')
        tasks = [task for task, names in TASK_FILES.items()
                 if all(name in explicit for name in names)]
        # An HF model.safetensors holds both towers: text comes with the vision file.
        if explicit['vision_weights'].endswith('.safetensors') and 'tokenizer' in explicit \
                and 'segmentation' not in tasks:
            tasks.append('segmentation')
        if not tasks:
            raise ValueError('no task can run: give --depth-head, --normals-head, or '
                             '--text-weights with --tokenizer')
        values['tasks'] = tasks
    return values
